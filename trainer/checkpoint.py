"""Orbax checkpoints of the whole train state plus JSON run metadata (step, data position, metrics).

One `CheckpointManager`, async saves, and a preservation policy that keeps the newest N steps and the best
by a validation metric. Restoring always targets an abstract state built for the current mesh, which is
what lets a checkpoint saved on one device layout load on another. The one exception to "the whole state":
a LoRA fine-tune's frozen pretrained base (`FrozenBase`), referenced by path and content hash instead.

Integrity: Orbax raises on truncated or missing files, but a flipped bit inside an array file loads
silently (measured on orbax-checkpoint 0.12.8). So every save records a per-array fingerprint in the
meta JSON, and restore recomputes and compares it. A damaged newest step is reported, moved aside to
`<step>.damaged` (so re-saving that step and the keep-N policy work) and the next older one is used.

Deleting is two steps: retention renames an old step into `deleting/` (atomic, so a kill never leaves a
half-deleted step where a restore looks), and the next save or start removes it. No space left while
saving is one UserError naming the failed step and the last complete one.
"""
import contextlib
import dataclasses
import functools
import re
import sys

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from flaxforge.core.errors import UserError
from flaxforge.trainer import orbax_quiet


class Damaged(Exception):
  pass


@functools.cache
def _whole_arrays_on_cpu():
  """On CPU a replicated array is written whole by its first replica, as Orbax already does on GPUs
  (orbax-checkpoint 0.12.8, `_get_default_use_replica_parallel`). Orbax's replica-parallel save splits a
  replicated array into one slice per replica so that several accelerators' transfers to the host share it;
  a CPU device's memory is the host's, so that split only adds one eager slice op per array and device (8
  fake CPU devices: 1.4 s of a tiny model's 1.5 s save, BENCHMARKS.md). Orbax reads its save handlers from a
  process-wide registry, so this replaces the registry's jax.Array handler, once."""
  if jax.default_backend() != "cpu":
    return
  from orbax.checkpoint._src.metadata import array_metadata_store  # pylint: disable=g-import-not-at-top
  from orbax.checkpoint._src.serialization import type_handler_registry  # pylint: disable=g-import-not-at-top
  type_handler_registry.GLOBAL_TYPE_HANDLER_REGISTRY.add(  # ignore_warnings: no "overriding" line on stderr
      jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False,
                                                array_metadata_store=array_metadata_store.Store()),
      override=True, ignore_warnings=True)


@dataclasses.dataclass(frozen=True)
class FrozenBase:
  """Parameters a run never changes (a pretrained base under LoRA), kept out of its checkpoints: each step
  holds the rest of the state and, in its meta, `reference` ({"path", "sha256"} of the base's files); a
  restore reads the base from there again with `load` and refuses a base whose content has changed."""
  is_frozen: object  # an nnx filter selecting the frozen Variables of the train state
  reference: dict
  load: object  # the frozen part of the abstract state (ShapeDtypeStructs with shardings) -> its arrays


class Checkpointer:

  def __init__(self, directory: epath.Path, *, keep: int = 3, best_metric: str = "", best_mode: str = "max",
               keep_best: int = 1, async_save: bool = True, read_only: bool = False,
               frozen: FrozenBase | None = None):
    orbax_quiet.install()
    _whole_arrays_on_cpu()
    self.directory = epath.Path(directory)
    self._in_flight = None  # the step of the save that may still be writing
    self.best_metric, self.best_mode, self.read_only, self.frozen = best_metric, best_mode, read_only, frozen
    self._protected = _Steps(set())
    preserve = [policies.LatestN(keep), self._protected]
    if best_metric and keep_best:
      # BestN keeps the last n of a stable sort, so a tie would go to the latest step; the step in the key
      # sends it to the earliest, the step best_step() and the run's summary name.
      sign = 1 if best_mode == "min" else -1
      preserve.append(policies.BestN(get_metric_fn=lambda m: (m[best_metric], sign * m.get(_STEP, 0)),
                                     reverse=best_mode == "min", n=keep_best, keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(preserve),
        enable_async_checkpointing=async_save,
        cleanup_tmp_directories=not read_only,
        create=not read_only,
        read_only=read_only,
        todelete_subdir=None if read_only else _DELETING,
    )
    # Explicit handlers (not just item names) let item_metadata() read the state's tree before a restore.
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers={
        "state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})
    self._purge_deleted()

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, meta: dict, metrics: dict | None = None, protect: int | None = None):
    """Starts an async save; `metrics` (validation, at this step) rank it for the best-N policy; retention
    also keeps step `protect` (early stopping's best) from now on."""
    if self.frozen:
      state = nnx.filter_state(state, nnx.Not(self.frozen.is_frozen))
      meta = {**meta, "frozen_base": self.frozen.reference}
    meta = {**meta, "fingerprint": fingerprint(state)}
    self.wait()  # Orbax would wait for the previous save here anyway; this names its step if it failed
    # Changed only once the previous save (and its retention) is done: until this save completes, the
    # previous one's meta may still name the old best, which must then still be on disk.
    self._protected.steps = {protect} - {None}
    self._purge_deleted()
    self._in_flight = step
    orbax_quiet.abandoned_writes()  # before the write: a full disk's reports can come before its error is raised
    with self._no_space_is_one_line():
      self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                       meta=ocp.args.JsonSave(meta)),
                         metrics=metrics and {**metrics, _STEP: step}, force=True)

  def warm_up(self, state):
    """Compiles the fingerprint for `state`'s shapes: a one-time cost, otherwise paid inside the first save's
    blocking part (BENCHMARKS.md, "Figures behind trainer/ comments")."""
    fingerprint(nnx.filter_state(state, nnx.Not(self.frozen.is_frozen)) if self.frozen else state)

  def meta(self, step: int) -> dict:
    return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

  def best_step(self) -> int | None:
    """The kept step with the best validation `best_metric` (read from each step's metadata); with early
    stopping, its best step (the one the run tested)."""
    steps = self.steps()
    early = (self.meta(steps[-1]).get("early_stopping") or {}).get("best_step") if steps else None
    if early in steps:
      return early
    scored = []
    for step in self.steps():
      value = (self.meta(step).get("validation") or {}).get(self.best_metric)
      if value is not None:
        scored.append((value, step))
    if not scored:
      return None
    # A tie goes to the earliest step, the one that first reached the value (as the run's summary reports it).
    return (max if self.best_mode == "max" else min)(scored, key=lambda value_step: value_step[0])[1]

  def restore(self, step: int | None, abstract_state, *, partial: bool = False) -> tuple[object, dict, int]:
    """Restores `step` (default: the newest that is intact) onto `abstract_state`'s shardings. `partial`:
    `abstract_state` holds only some of the saved state's top-level parts (the model half `{0: ...}` of a
    train state), and only those are read and fingerprint-checked.

    A checkpoint of another model or config is refused with its differences listed. A damaged newest step
    is reported and the next older one tried; an explicitly requested step is never swapped for another.
    """
    steps = self.steps()
    if step is not None and step not in steps:
      raise UserError(f"no checkpoint at step {step} in {self.directory}; available steps: "
                      f"{', '.join(map(str, steps)) or 'none'}")
    candidates = [step] if step is not None else sorted(steps, reverse=True)
    orbax_quiet.abandoned_reads()  # before the first read: a damaged step's reports can come while it fails
    for i, candidate in enumerate(candidates):
      try:
        base = self.meta(candidate).get("frozen_base") if self.frozen else None
        target = nnx.filter_state(abstract_state, nnx.Not(self.frozen.is_frozen)) if base else abstract_state
        self._check_fits(candidate, target, partial=partial)
        restored = self._restore_part(candidate, target) if partial else self._manager.restore(
            candidate, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        _verify(restored.state, restored.meta)
      except UserError:
        raise
      except Exception as e:  # pylint: disable=broad-except  (any failure to read a step = damaged)
        if step is not None or i == len(candidates) - 1:
          raise UserError(f"checkpoint step {candidate} in {self.directory} is damaged ({_first_line(e)}); "
                          "move that step's directory away to fall back to an older one") from e
        print(f"warning: checkpoint step {candidate} in {self.directory} is damaged ({_first_line(e)}); "
              f"falling back to step {candidates[i + 1]}", file=sys.stderr)
        continue
      if i and not self.read_only:
        self._quarantine(candidates[:i])
      state = self._with_base(restored.state, base, abstract_state) if base else restored.state
      return state, restored.meta, candidate
    raise UserError(f"no checkpoint in {self.directory}; train first with flaxforge.launch.train --workdir=...")

  def _with_base(self, state, base: dict, abstract_state):
    """The restored `state` completed with the frozen base that its step references, read again."""
    if base.get("sha256") != self.frozen.reference["sha256"]:
      raise UserError(f"the base weights in {base.get('path')} changed since this run was saved (sha256 "
                      f"{str(base.get('sha256'))[:12]}... then, {self.frozen.reference['sha256'][:12]}... now); "
                      "restore the original files, or warm-start a new --workdir with --config.train.init_from")
    return nnx.merge_state(state, self.frozen.load(nnx.filter_state(abstract_state, self.frozen.is_frozen)))

  def _restore_part(self, step: int, target):
    """The arrays of `step`'s state that `target` names, onto its shardings, and the step's meta. The rest is
    never read: Orbax's partial restore (`PyTreeRestore(partial_restore=True)`), through a reader of its own
    because the manager's StandardCheckpointHandler takes only StandardRestore, which has no partial mode."""
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as reader:
      state = reader.restore(self.directory / str(step) / "state", args=ocp.args.PyTreeRestore(
          target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))
    return ocp.args.Composite(state=state, meta=self.meta(step))

  def _check_fits(self, step: int, abstract_state, *, partial: bool = False):
    """Compares the saved tree (names, shapes) with the model's before reading any array (with `partial`,
    only the saved parts that `abstract_state` holds)."""
    try:
      saved = self._manager.item_metadata(step)["state"]
      saved = {_name(p, leaf): leaf.shape for p, leaf in jax.tree_util.tree_flatten_with_path(saved)[0]}
    except Exception as e:  # pylint: disable=broad-except
      raise Damaged(f"unreadable tree metadata: {_first_line(e)}") from e
    if not saved:
      raise Damaged("empty tree metadata")
    wanted = {}
    for p, leaf in jax.tree_util.tree_flatten_with_path(abstract_state)[0]:
      is_key = jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)
      wanted[_name(p, leaf)] = None if is_key else tuple(leaf.shape)  # keys are stored as key_data
    problems = [f"{n}: checkpoint {tuple(saved[n])} vs model {shape}" for n, shape in wanted.items()
                if n in saved and shape is not None and tuple(saved[n]) != shape]
    problems += [f"{n}: not in the checkpoint" for n in wanted if n not in saved]
    parts = {n.split(".", 1)[0] for n in wanted}  # e.g. "0", the model half
    problems += [f"{n}: not in the model" for n in saved
                 if n not in wanted and (not partial or n.split(".", 1)[0] in parts)]
    if problems:
      problems.sort(key=lambda p: (p.startswith("1."), p))  # the model's own arrays before optimizer copies
      problems = [p.replace(".value:", ":") for p in problems]
      shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
      raise UserError(f"the checkpoint at step {step} in {self.directory} does not fit this model/config "
                      f"({shown}); train into a new --workdir, or use the config the run was trained with")

  def _quarantine(self, damaged: list[int]):
    """Moves damaged steps aside: they must not count as 'latest' nor block re-saving their step."""
    if jax.process_index() == 0:
      for step in damaged:
        src, dst = self.directory / str(step), self.directory / f"{step}.damaged"
        if dst.exists():
          dst.rmtree()
        src.rename(dst)
        print(f"warning: moved the damaged step to {dst}", file=sys.stderr)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("checkpoint quarantine")
    self._manager.reload()

  def wait(self):
    with self._no_space_is_one_line():
      self._manager.wait_until_finished()
    self._in_flight = None

  def on_disk(self) -> str:
    """What a stopped run leaves, in words: the newest complete checkpoint (and any save in flight)."""
    text = on_disk(self.directory)
    steps = complete_steps(self.directory)
    if self._in_flight is not None and self._in_flight not in steps:
      text += f"; the unfinished save of step {self._in_flight} is discarded at the next start"
    return text

  @contextlib.contextmanager
  def _no_space_is_one_line(self):
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except  (Orbax wraps the OSError in its own types)
      if not orbax_quiet.is_no_space(e):
        raise
      step, self._in_flight = self._in_flight, None
      orbax_quiet.no_space_at_exit()
      raise UserError(f"no space left on the device while saving the checkpoint at step {step} in "
                      f"{self.directory}; {self.on_disk()}; free space (or move the work directory to a larger "
                      "disk) and run the same command again to resume from it") from None

  def _purge_deleted(self):
    """Removes the steps retention renamed into deleting/ (their deletion may have been cut short)."""
    deleting = self.directory / _DELETING
    if not self.read_only and jax.process_index() == 0 and deleting.exists():
      deleting.rmtree()

  def close(self):
    self._manager.close()


@dataclasses.dataclass
class _Steps(policies.PreservationPolicy):
  """Preserves the steps in `steps`, a set the owner changes between saves."""
  steps: set

  def should_preserve(self, checkpoints, *, context):
    del context
    return [c.step in self.steps for c in checkpoints]


def complete_steps(directory: epath.Path) -> list[int]:
  """Steps whose save finished (read from the directory: an unfinished save is a temporary name)."""
  directory = epath.Path(directory)
  if not directory.exists():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def on_disk(directory: epath.Path) -> str:
  """The newest complete checkpoint in `directory`, in words."""
  steps = complete_steps(directory)
  return f"the last complete checkpoint is step {steps[-1]} in {directory}" if steps else "no complete checkpoint"


def _name(path, leaf) -> str:
  name = getattr(leaf, "name", None)  # Orbax ArrayMetadata carries the dotted name it was saved under
  if name:
    return name
  parts = [getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path]
  return ".".join(str(p) for p in parts)


@jax.jit
def _fingerprints(state):
  """Per array: sum(bits * odd position weight) mod 2**32. Integer sums are exact in any order, so the
  value does not depend on the sharding or device count."""
  def one(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
      bits = x.astype(jnp.uint32)
    else:
      width = {1: jnp.uint8, 2: jnp.uint16}.get(x.dtype.itemsize, jnp.uint32)
      bits = jax.lax.bitcast_convert_type(x, width).astype(jnp.uint32)
    weight = jnp.ones(bits.shape, jnp.uint32)
    for dim, prime in zip(range(bits.ndim), (2654435761, 40503, 2246822519, 3266489917, 668265263)):
      weight = weight + jax.lax.broadcasted_iota(jnp.uint32, bits.shape, dim) * jnp.uint32(prime)
    return jnp.sum(bits * (weight * 2 + 1), dtype=jnp.uint32)
  return jax.tree.map(one, state)


def fingerprint(state) -> dict[str, int]:
  values = jax.device_get(_fingerprints(state))
  return {_name(p, None): int(v) for p, v in jax.tree_util.tree_flatten_with_path(values)[0]}


def _verify(state, meta: dict):
  expected = meta.get("fingerprint")
  if expected is None:  # saved before fingerprints existed
    return
  bad = [n for n, v in fingerprint(state).items() if expected.get(n) != v]
  if bad:
    raise Damaged(f"contents do not match the fingerprint saved with them: {', '.join(bad[:4])}")


_DELETING = "deleting"
_STEP = "_step"  # added to the metrics Orbax ranks by, to break ties


def _first_line(e: Exception) -> str:
  """The error's first line, without the TensorStore spec or bound-method repr that Orbax appends."""
  line = (str(e).strip().splitlines() or [""])[0]
  line = re.split(r" ?\[tensorstore_spec=|<bound method", line)[0].rstrip(" :;,(")
  return line[:300] or type(e).__name__
