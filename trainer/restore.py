"""Restoring a trained run from its work directory, for evaluation, prediction and generation.

The run's own config.json and info.json rebuild the model, and the state is restored onto the mesh of
this process (whatever device count it has), so no dataset or training code is needed to load it.
"""
import dataclasses

import jax
import ml_collections

from flaxforge.data import pipeline, preprocess
from flaxforge.trainer import checkpoint, evaluate, mesh as mesh_lib, report, state as state_lib, workdir as workdir_lib
from flaxforge.core.errors import UserError


@dataclasses.dataclass
class Restored:
  config: ml_collections.ConfigDict
  info: dict
  mesh: object
  structure: state_lib.Structure
  state: object
  step: int
  workdir: object


def restore(workdir: str, *, step: int | None = None, best: bool = False, mesh_cfg=None) -> Restored:
  workdir = workdir_lib.resolve(workdir)
  config = workdir_lib.load_config(workdir)
  info = workdir_lib.load_info(workdir)
  mesh = mesh_lib.make_mesh(mesh_cfg or {"data": -1, "fsdp": 1, "tensor": 1})
  structure, _ = state_lib.structure(config, info, mesh, total_steps=1)
  ckpt = checkpoint.Checkpointer(workdir / workdir_lib.CHECKPOINTS, best_metric=config.checkpoint.best_metric,
                                 best_mode=config.checkpoint.best_mode, read_only=True)
  if best:
    step = ckpt.best_step()
    if step is None:
      raise UserError(f"no checkpoint in {workdir} has a validation '{config.checkpoint.best_metric}'; "
                      "drop --best or pass --step")
  state, _, step = ckpt.restore(step, structure.abstract)
  ckpt.close()
  return Restored(config, info, mesh, structure, state, step, workdir)


def evaluate_workdir(workdir: str, *, step: int | None = None, best: bool = False, split: str = "test",
                     data_dir: str = "") -> dict:
  """Metrics of a checkpoint on a split; classifiers also get a report (JSON + confusion matrix PNG)."""
  run = restore(workdir, step=step, best=best)
  dataset = workdir_lib.open_data(run.workdir, run.config, data_dir)
  if split not in dataset.splits:
    raise UserError(f"split {split!r} not in the dataset; choose one of: {', '.join(dataset.splits)}")
  rows = pipeline.Rows(dataset.splits[split], in_memory=run.config.data.in_memory)
  eval_step = evaluate.make_eval_step(run.structure, run.mesh, run.config, run.info)
  transform = preprocess.make_transform(run.info, run.config.data.label_encoding)
  results = evaluate.evaluate(run.state, eval_step, rows, global_batch=run.config.data.eval_batch_size,
                              mesh=run.mesh, info=run.info, transform=transform)
  summary = {k: v for k, v in results.items() if isinstance(v, (int, float))}
  if "confusion" in results and jax.process_index() == 0:
    report.write(run.workdir / "report", split, run.step, results, run.info.get("label_names"))
  return {"split": split, "step": run.step, **summary}
