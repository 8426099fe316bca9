"""Evaluation: metrics of a state over a whole split, and the eval job for a trained work directory."""
import math

import jax

from flaxforge.core import imports
from flaxforge.core.errors import UserError
from flaxforge.data import pipeline
from flaxforge.trainer import feed
from flaxforge.trainer import mesh as mesh_lib
from flaxforge.trainer import metrics as metrics_lib
from flaxforge.trainer import fields, preference, report, restore, run_data, steps
from flaxforge.trainer import workdir as workdir_lib


def evaluate(state, eval_step, rows: pipeline.Rows, *, global_batch: int, mesh, info: dict,
             transform=None, reference=None) -> dict:
  """Derived metrics (loss, accuracy, and per-class figures for classifiers) of `state` on `rows`:
  ordered, padded batches through the jitted eval step (`reference`: DPO's frozen reference model, if any)."""
  # Pads mark the extra rows, so rounding the batch up to what the devices and processes split is free.
  divisor = math.lcm(mesh_lib.batch_divisor(mesh), jax.process_count())
  global_batch = -(-global_batch // divisor) * divisor
  host = pipeline.eval_batches(rows, global_batch, process_index=jax.process_index(),
                               process_count=jax.process_count(), transform=transform)
  sums = steps.eval_metrics_init(mesh, _num_classes(info), steps.sum_names(info))
  for batch, _, _ in feed.prefetch(host, mesh_lib.batch_sharding(mesh)):
    sums = eval_step(state, sums, batch, reference)
  return metrics_lib.derive(jax.device_get(sums), info)


def _num_classes(info: dict) -> int:
  return info.get("num_classes", 0) if info.get("task") == "classification" else 0


def make_eval_step(structure, mesh, config, info):
  """The jitted eval step of a run: build it once per run (each build compiles again at its first call)."""
  loss, num_classes = fields.Run.of(config).loss, _num_classes(info)
  return steps.make_eval_step(structure, mesh, loss_kind=loss, num_classes=num_classes, sums_of=steps.objective(
      loss, info, num_classes=num_classes, pairs=fields.Preference.of(config)))


def evaluate_workdir(workdir: str, *, step: int | None = None, best: bool = False, split: str = "test",
                     report_dir: str | None = None, data_dir: str = "", model=None) -> dict:
  """The eval job: metrics of a run's checkpoint on a split. Classifiers also get a report (JSON and the
  confusion matrix as PNG) in `report_dir` (default <workdir>/report): "report" lists the files written, or
  "report_error" says why none could be (a read-only run), so the metrics are never lost. The data is the
  run's recorded prepared split (`data_dir`: where it lies now, if moved), never a re-fit of the user's file.
  A classifier's "classification_report" is its per-class table as text (report.table)."""
  missing = workdir_lib.missing_split(workdir_lib.resolve(workdir), split, f"--split={split}")
  if missing:  # before restoring: one line naming the splits the run has
    raise UserError(f"{missing}; pass --split={'test' if split != 'test' else 'train'}")
  run = restore.restore(workdir, step=step, best=best, model=model, model_only=True)
  try:
    dataset = workdir_lib.open_data(run.workdir, run.config, data_dir)
  except imports.NotFound as e:  # a user's loader (data.name) that was moved
    raise restore.module_not_found(e, "data.name", run.workdir) from None
  data = run_data.load_data(run.config, info=run.info, dataset=dataset)
  rows = data.split(split)
  reference = preference.reference_state(run.config, run.info, run.mesh, model)  # DPO's, for a full fine-tune
  results = evaluate(run.state, make_eval_step(run.structure, run.mesh, run.config, run.info), rows,
                     global_batch=fields.Feed.of(run.config).eval_batch_size, mesh=run.mesh, info=run.info,
                     transform=data.transform, reference=reference)
  summary = {"split": split, "step": run.step, **{k: v for k, v in results.items() if isinstance(v, (int, float))}}
  if "confusion" in results:
    summary["classification_report"] = report.table(results, run.info.get("label_names"))
  if "confusion" in results and jax.process_index() == 0:
    directory = report_dir or run.workdir / "report"
    try:
      summary["report"] = [str(p) for p in report.write(directory, split, run.step, results, run.info.get("label_names"))]
    except OSError as e:
      summary["report_error"] = (f"could not write the report in {directory} ({e.strerror or e}); pass "
                                 "--report_dir=A_WRITABLE_FOLDER")
  return summary
