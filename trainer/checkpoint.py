"""Orbax checkpoints of the whole train state plus JSON run metadata (step, data position, metrics).

One `CheckpointManager`, async saves, and a preservation policy that keeps the newest N steps and the best
by a validation metric. Restoring always targets an abstract state built for the current mesh, which is
what lets a checkpoint saved on one device layout load on another.
"""
import sys

import jax
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies

from trainer.errors import UserError


class Checkpointer:

  def __init__(self, directory: epath.Path, *, keep: int = 3, best_metric: str = "", best_mode: str = "max",
               keep_best: int = 1, async_save: bool = True, read_only: bool = False):
    self.directory = epath.Path(directory)
    self.best_metric, self.best_mode = best_metric, best_mode
    preserve = [policies.LatestN(keep)]
    if best_metric and keep_best:
      preserve.append(policies.BestN(get_metric_fn=lambda m: m[best_metric], reverse=best_mode == "min",
                                     n=keep_best, keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(preserve),
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=not read_only,
        create=not read_only,
        read_only=read_only,
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, meta: dict, metrics: dict | None = None):
    """Starts an async save; `metrics` (validation, at this step) rank it for the best-N policy."""
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)),
                       metrics=metrics, force=True)

  def meta(self, step: int) -> dict:
    return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

  def best_step(self) -> int | None:
    """The kept step with the best validation `best_metric` (read from each step's metadata)."""
    scored = []
    for step in self.steps():
      value = (self.meta(step).get("validation") or {}).get(self.best_metric)
      if value is not None:
        scored.append((value, step))
    if not scored:
      return None
    return (max if self.best_mode == "max" else min)(scored)[1]

  def restore(self, step: int | None, abstract_state) -> tuple[object, dict, int]:
    """Restores `step` (default: the newest that is intact) onto `abstract_state`'s shardings.

    A newest step that fails to load (truncated or missing files) is reported and the next older one is
    tried; an explicitly requested step is never silently swapped for another.
    """
    steps = self.steps()
    if step is not None and step not in steps:
      raise UserError(f"no checkpoint at step {step} in {self.directory}; available steps: "
                      f"{', '.join(map(str, steps)) or 'none'}")
    candidates = [step] if step is not None else sorted(steps, reverse=True)
    for i, candidate in enumerate(candidates):
      try:
        restored = self._manager.restore(candidate, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return restored.state, restored.meta, candidate
      except Exception as e:  # pylint: disable=broad-except
        if _is_mismatch(e):
          raise UserError(f"the checkpoint in {self.directory} does not fit this model/config: {_first_line(e)}; "
                          "train into a new --workdir, or restore with the config the run was trained with") from e
        if step is not None or i == len(candidates) - 1:
          raise UserError(f"checkpoint step {candidate} in {self.directory} is damaged ({_first_line(e)}); "
                          "delete that step's directory to fall back to an older one") from e
        print(f"warning: checkpoint step {candidate} is damaged ({_first_line(e)}); falling back to step "
              f"{candidates[i + 1]}", file=sys.stderr)
    raise UserError(f"no checkpoint in {self.directory}; train first with launch.train --workdir=...")

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()


def _first_line(e: Exception) -> str:
  return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _is_mismatch(e: Exception) -> bool:
  text = str(e).lower()
  return "shape" in text or "structure" in text or "missing" in text and "key" in text
