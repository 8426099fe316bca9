"""Restoring a trained run from its work directory, for evaluation, prediction, generation and export.

The run's own config.json and info.json rebuild the model, and the state is restored onto the run's own
mesh when this machine's devices allow it (else onto all of them, data-parallel), so no dataset or
training code is needed to load it. A run's consumers restore the model alone (`model_only`): no optimizer
is built and the optimizer's arrays (Adam's two moments: 2/3 of a full fine-tune's checkpoint) are not read.
"""
import dataclasses

import ml_collections

from flaxforge.core.errors import UserError
from flaxforge.trainer import setup, state as state_lib, workdir as workdir_lib


@dataclasses.dataclass
class Restored:
  config: ml_collections.ConfigDict
  info: dict
  mesh: object
  structure: state_lib.Structure  # with model_only, the model half's (`state_lib.model_structure`)
  state: object  # the train state {0: model, 1: optimizer}, or {0: model} with model_only
  step: int
  workdir: object


def restore(workdir: str, *, step: int | None = None, best: bool = False, devices=None, model=None,
            model_only: bool = False) -> Restored:
  """The checkpoint at `step` (default the latest; `best`: the best by the run's validation metric).
  `model`: the factory a run trained through flaxforge.train(model=...) was built with. `model_only`: the
  model half alone (an Orbax partial restore, its fingerprints checked); `nnx.merge(structure.graphdef,
  state)` then gives `(model, None)`."""
  workdir = workdir_lib.resolve(workdir)
  config = workdir_lib.load_config(workdir)
  info = workdir_lib.load_info(workdir)
  mesh = setup.mesh_for(config, devices)
  if model_only:
    structure = state_lib.model_structure(config, info, mesh, model=model)
  else:
    structure, _ = state_lib.structure(config, info, mesh, total_steps=1, model=model)
  ckpt = setup.checkpointer(config, workdir, read_only=True)
  if best:
    step = ckpt.best_step()
    if step is None:
      missing = workdir_lib.missing_split(workdir, "validation", "--best")
      raise UserError(f"{missing}, so no checkpoint is ranked; drop --best (the latest checkpoint is the "
                      "final model) or pass --step=N" if missing else
                      f"no checkpoint in {workdir} has a validation '{config.checkpoint.best_metric}'; "
                      "drop --best or pass --step")
  state, _, step = ckpt.restore(step, structure.abstract, partial=model_only)
  ckpt.close()
  return Restored(config, info, mesh, structure, state, step, workdir)
