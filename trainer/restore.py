"""Restoring a trained run from its work directory, for evaluation, prediction, generation and export.

Which step is "the model" is decided here, once (`choose_step`): the step the run itself tested, that is
early stopping's best when the run used early stopping (the newest checkpoint may be worse), else the newest;
`step=N`, `best` (the best by checkpoint.best_metric) and `step=LATEST` choose otherwise. The chosen step is
said in one line on stderr.

The run's own config.json and info.json rebuild the model, and the state is restored onto the run's own
mesh when this machine's devices allow it (else onto all of them, data-parallel), so no dataset or
training code is needed to load it. A run's consumers restore the model alone (`model_only`): no optimizer
is built and the optimizer's arrays (Adam's two moments: 2/3 of a full fine-tune's checkpoint) are not read.
"""
import dataclasses
import os
import sys

import ml_collections
from etils import epath

from flaxforge.core import imports, paths, run_config
from flaxforge.core.errors import UserError
from flaxforge.models import fields as model_fields
from flaxforge.trainer import fields, mesh as mesh_lib, state as state_lib, workdir as workdir_lib

NEWEST = "the newest checkpoint"
LATEST = -1  # step=LATEST: the newest checkpoint, even after early stopping (--latest)


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
  """The checkpoint at `step` (default: the run's model, `choose_step`; `LATEST`: the newest; `best`: the best
  by the run's validation metric), said in one line on stderr unless it is the plain newest one. `model`: the
  factory a run trained through flaxforge.train(model=...) was built with. `model_only`: the model half alone (an Orbax partial restore, its
  fingerprints checked); `nnx.merge(structure.graphdef, state)` then gives `(model, None)`."""
  workdir = workdir_lib.resolve(workdir)
  config = workdir_lib.load_config(workdir)
  info = workdir_lib.load_info(workdir)
  _check_base(config, workdir)
  mesh = mesh_lib.mesh_for(config.mesh, devices)
  try:
    if model_only:
      structure = state_lib.model_structure(config, info, mesh, model=model)
    else:
      structure, _ = state_lib.structure(config, info, mesh, total_steps=1, model=model)
  except imports.NotFound as e:
    raise module_not_found(e, "model.name", workdir) from None
  ckpt = workdir_lib.checkpointer(workdir, config, read_only=True)
  try:
    step, why = choose_step(ckpt, config, workdir, step, best)
    state, _, step = ckpt.restore(step, structure.abstract, partial=model_only)
  finally:
    ckpt.close()
  if why != NEWEST:  # the plain default goes unsaid: a refused command's stderr stays its one error line
    print(f"using step {step} of {workdir}: {why}", file=sys.stderr)
  return Restored(config, info, mesh, structure, state, step, workdir)


def _check_base(config, workdir):
  """UserError when the pretrained base the run's model is rebuilt from (model.pretrained) has gone: the
  commands that restore a run take no config override, so the fix named is the run's own config.json."""
  base = model_fields.Pretrained.read(config.model).pretrained
  if base and not (epath.Path(paths.expand(base)) / "config.json").exists():
    raise UserError(f"the base model of the run in {workdir}, {base} (model.pretrained), holds no config.json "
                    "(moved or deleted); the run's model is rebuilt from it: put the folder back there, or set "
                    f'"pretrained" in the "model" section of {workdir / run_config.FILE} to where it is now')


def choose_step(ckpt, config, workdir, step: int | None, best: bool) -> tuple[int | None, str]:
  """(the step to restore, None for the newest intact one; why, in words) for `restore`'s arguments. UserError
  for two choices at once or a `best` no checkpoint is ranked for."""
  if best and step is not None:
    flag = "--latest" if step == LATEST else f"--step={step}"
    raise UserError(f"--best and {flag} each choose a checkpoint; pass only one of them")
  if best:
    chosen = ckpt.best_step()
    if chosen is None:
      missing = workdir_lib.missing_split(workdir, "validation", "--best")
      raise UserError(f"{missing}, so no checkpoint is ranked; drop --best (the latest checkpoint is the "
                      "final model) or pass --step=N" if missing else
                      f"no checkpoint in {workdir} has a validation '{config.checkpoint.best_metric}'; "
                      "drop --best or pass --step")
    return chosen, f"the best validation {config.checkpoint.best_metric} (--best)"
  if step == LATEST:
    return None, "the newest checkpoint (--latest)"
  if step is not None:
    return step, "as asked (--step)"
  steps = ckpt.steps()
  try:
    early = (ckpt.meta(steps[-1]).get("early_stopping") or {}) if steps else {}
  except Exception:  # pylint: disable=broad-except  (a damaged newest step: ckpt.restore says so and falls back)
    early = {}
  if early.get("best_step") in steps[:-1]:
    metric = fields.EarlyStopping.of(config).metric
    return early["best_step"], (f"early stopping's best (validation {metric} {early['best']:.4f}), the step the "
                                f"run tested; the newest is step {steps[-1]} (--latest)")
  return None, NEWEST


def module_not_found(e: imports.NotFound, field: str, workdir) -> UserError:
  """A run's own module (`field` of its config.json: model.name, data.name) cannot be imported here, in one
  line whose fix a command without --config flags can follow (train's own message names --config.FIELD)."""
  return UserError(f"{e.name!r} ({field} in {workdir / run_config.FILE}) cannot be imported from {os.getcwd()}; "
                   f"run this from the folder the run was trained in, or set {field} in that file to the "
                   "module's .py file")
