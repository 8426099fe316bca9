"""Restoring a trained run from its work directory, for evaluation, prediction and generation.

The run's own config.json and info.json rebuild the model, and the state is restored onto the run's own
mesh when this machine's devices allow it (else onto all of them, data-parallel), so no dataset or
training code is needed to load it.
"""
import dataclasses

import ml_collections

from flaxforge.core.errors import UserError
from flaxforge.trainer import mesh as mesh_lib, state as state_lib, workdir as workdir_lib


@dataclasses.dataclass
class Restored:
  config: ml_collections.ConfigDict
  info: dict
  mesh: object
  structure: state_lib.Structure
  state: object
  step: int
  workdir: object


def restore(workdir: str, *, step: int | None = None, best: bool = False, devices=None, model=None) -> Restored:
  """The checkpoint at `step` (default the latest; `best`: the best by the run's validation metric).
  `model`: the factory a run trained through flaxforge.train(model=...) was built with."""
  workdir = workdir_lib.resolve(workdir)
  config = workdir_lib.load_config(workdir)
  info = workdir_lib.load_info(workdir)
  mesh = mesh_lib.mesh_for(config.mesh, devices)
  structure, _ = state_lib.structure(config, info, mesh, total_steps=1, model=model)
  ckpt = workdir_lib.checkpointer(workdir, config, read_only=True)
  if best:
    step = ckpt.best_step()
    if step is None:
      missing = workdir_lib.missing_split(workdir, "validation", "--best")
      raise UserError(f"{missing}, so no checkpoint is ranked; drop --best (the latest checkpoint is the "
                      "final model) or pass --step=N" if missing else
                      f"no checkpoint in {workdir} has a validation '{config.checkpoint.best_metric}'; "
                      "drop --best or pass --step")
  state, _, step = ckpt.restore(step, structure.abstract)
  ckpt.close()
  return Restored(config, info, mesh, structure, state, step, workdir)
