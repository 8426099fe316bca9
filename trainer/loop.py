"""The training loop: restore or create the state, then step, log, validate, checkpoint, and test.

The loop never waits on the devices inside a step: metric sums stay on the devices and come back only at
logging intervals, validation and checkpoints, so host dispatch runs ahead of the computation (by at most
two calls: steps.InFlight). Between those points the loop runs with implicit host<->device transfers
disallowed (`jax.transfer_guard`), so a stray sync inside the step loop is an error rather than a silent
slowdown. Until the first step has finished, a stop signal ends the run at once (preemption.py).
"""
import dataclasses
import itertools
import sys
import time
from typing import Callable

import jax
import ml_collections
from etils import epath
from jax.sharding import Mesh

from flaxforge.data import packing as data_packing
from flaxforge.models import registry
from flaxforge.core.errors import UserError
from flaxforge.trainer import checkpoint, due as due_lib, early_stopping, evaluate, feed as feed_lib, fields
from flaxforge.trainer import flops as flops_lib
from flaxforge.trainer import interval as interval_lib
from flaxforge.trainer import losses
from flaxforge.trainer import mesh as mesh_lib
from flaxforge.trainer import metrics as metrics_lib
from flaxforge.trainer import optim, preemption, preference, profiler, progress as progress_lib, run_data
from flaxforge.trainer import state as state_lib, steps as steps_lib, warm_start, workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class Run:
  """What one training run is built from, fixed once it starts (`early`'s and `progress`'s own state moves)."""
  config: ml_collections.ConfigDict
  train: fields.Train  # config.train, read once
  batch_size: int  # global, of a training step
  eval_batch_size: int
  workdir: epath.Path
  mesh: Mesh
  data: run_data.Data
  structure: state_lib.Structure
  eval_step: Callable  # built once: every validation and the test share one compile
  learning_rate: Callable[[int], float]  # the optimizer's schedule, by update count
  ckpt: checkpoint.Checkpointer
  writer: metrics_lib.MetricWriter
  progress: progress_lib.Progress
  stop: preemption.StopRequest
  early: early_stopping.EarlyStopping
  steps_per_epoch: int
  total: int
  model: Callable | None = None  # the Python API's model factory, if one was given
  reference: object = None  # DPO's frozen reference model for a full fine-tune (trainer/preference.py)

  def evaluate(self, state, split: str) -> dict:
    return evaluate.evaluate(state, self.eval_step, self.data.rows[split], global_batch=self.eval_batch_size,
                             mesh=self.mesh, info=self.data.info, transform=self.data.transform,
                             reference=self.reference)


def train(config, workdir: str, devices=None, *, model=None) -> dict:
  """Trains (or resumes) the run in `workdir` (on `devices`, default all); returns the final test metrics.
  `model`: a factory `(cfg, info, rngs) -> nnx.Module` used instead of `config.model.name`, which then
  records it as 'module:name' (a resume with another function is another run)."""
  fields.validate(config)
  if model is not None:
    config = config.copy_and_resolve_references()
    config.model.name = f"{model.__module__}:{model.__qualname__}"
  stop = preemption.StopRequest()  # from the start: a signal during start-up ends the run at once
  try:
    return _train(config, workdir, devices, stop, model)
  except preemption.Stopped:
    _stopped_in_start_up(stop, workdir)
  finally:
    stop.restore()
    workdir_lib.release(workdir_lib.resolve(workdir))  # however it ended: a notebook's kernel outlives the run


def _stopped_in_start_up(stop: preemption.StopRequest, workdir: str):
  """A signal before the first step finished: one line saying what is kept, then exit 0."""
  steps = checkpoint.complete_steps(workdir_lib.resolve(workdir) / workdir_lib.CHECKPOINTS)
  kept = f"the checkpoint of step {steps[-1]} is kept" if steps else "nothing to save yet"
  print(f"stopped by {stop.signal_name} during {stop.phase}; {kept}. Run the same command again to "
        f"{'resume' if steps else 'start'}.", flush=True)
  raise SystemExit(0) from None


def _train(config, workdir: str, devices, stop: preemption.StopRequest, model) -> dict:
  workdir = workdir_lib.prepare(workdir)  # and its lease: one training per work directory
  config, config_changes = workdir_lib.check_config(workdir, config)  # refuses a change to what defines the run
  workdir_lib.check_source(workdir, config)  # refuses an edited input file before preparing it
  run_data.check_positions(config)
  tc, feed, ckpt_cfg = fields.Train.of(config), fields.Feed.of(config), fields.Checkpoint.of(config)
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  stop.phase = "data preparation"
  data = run_data.load_data(config)
  data_record = workdir_lib.check_data(workdir, config, data.dataset)  # refuses other data
  packing = feed_lib.packing_of(config, data.info)
  steps_per_epoch, total = feed_lib.plan(feed, tc, feed_lib.train_rows(data.rows["train"], packing, data.info,
                                                                       feed.seed), mesh)
  stop.phase = "model set-up"
  structure, create = state_lib.structure(config, data.info, mesh, total, model=model)
  ckpt = workdir_lib.checkpointer(workdir, config)
  stop.on_disk = ckpt.on_disk
  state, step, meta, warm_line = _initial_state(ckpt, structure, create, tc.init_from, mesh, model)
  early = early_stopping.EarlyStopping.from_config(config, meta.get("early_stopping"))
  if early.enabled and "validation" not in data.rows:
    raise UserError("early stopping watches the validation split, which this dataset lacks; set "
                    "--config.train.early_stopping.metric='' or use data with a validation split")
  workdir_lib.save_run(workdir, config, data.info, data.assets, data_record)  # after restore: a refused config must not replace it
  progress = progress_lib.Progress(total, step, enabled=tc.progress_bar, time_limit_minutes=tc.time_limit_minutes,
                                   best_metric=ckpt_cfg.best_metric, best_mode=ckpt_cfg.best_mode)
  finished = step >= total or early.stopped
  optimizer = fields.Optimizer.of(config)
  run = Run(config, tc, feed.batch_size, feed.eval_batch_size, workdir, mesh, data, structure,
            evaluate.make_eval_step(structure, mesh, config, data.info), optim.schedule(optimizer, total), ckpt,
            metrics_lib.MetricWriter(workdir, tensorboard=not finished, from_step=step), progress, stop, early,
            steps_per_epoch, total, model, preference.reference_state(config, data.info, mesh, model))
  if config_changes:
    run.writer.write(step, "config_change", {"changes": config_changes})
  if step:
    progress.print(f"resumed from the checkpoint at step {step} in {ckpt.directory}")
  if warm_line:
    progress.print(warm_line)
  warmup_warning = optim.warmup_warning(optimizer, total)
  if warmup_warning:
    print(warmup_warning, file=sys.stderr)
  progress.print(f"{config.model.name}: {state_lib.parameters_line(config.model, structure.abstract)}; {total} "
                 f"steps ({steps_per_epoch} per epoch, batch {feed.batch_size}) on mesh {dict(mesh.shape)}")

  if finished:
    stop.started()  # nothing left to start: a signal now is an ordinary stop
    progress.print(f"run in {workdir} already finished at step {step}"
                   f"{' (stopped early)' if early.stopped else ''}; evaluating "
                   f"{'its best checkpoint' if early.enabled else 'the final state'}")
  else:
    try:
      state, step, why_end = _fit(run, state, step, meta.get("data"))
    finally:
      ckpt.wait()  # an error or exit must not abandon a save in flight
      progress.end_bar()  # a notebook's kernel outlives the run: a bar left open is redrawn by the next run's
    if why_end == due_lib.EARLY_STOPPING:
      progress.print(early.describe(step))
    elif why_end == due_lib.TIME_LIMIT:
      progress.print(f"time limit of {tc.time_limit_minutes} minutes reached after step {step} of "
                     f"{total}; the same command continues from there")
  progress.close(ckpt.steps(), workdir, validated="validation" in data.rows,
                 data_warnings=data.dataset.report.get("warnings", ()))
  results = _test(run, state, step, finished) if "test" in data.rows else {}
  run.writer.close()
  ckpt.close()
  workdir_lib.release(workdir)
  return results


def _initial_state(ckpt: checkpoint.Checkpointer, structure, create, init_from: str, mesh, model):
  """(state, step, its checkpoint's meta, a warm start's line or None): the newest checkpoint's state, else a
  new one, started from `init_from`'s parameters when set (a resume ignores it)."""
  if ckpt.latest_step() is not None:
    state, meta, step = ckpt.restore(None, structure.abstract)
    return state, step, meta, None
  state, warm_line = preemption.responsive(create), None  # a compile, and for a pretrained model the weights read
  if init_from:
    state, warm_line = warm_start.apply(init_from, state, mesh, model)
  return state, 0, {}, warm_line


def _test(run: Run, state, step: int, finished: bool) -> dict:
  """Test metrics of the final state or, with early stopping, of its best checkpoint; recorded and printed."""
  tested = step
  if run.early.enabled and run.early.best_step not in (None, step):
    state, _, tested = run.ckpt.restore(run.early.best_step, run.structure.abstract)
  results = run.evaluate(state, "test")
  record = {**results, "checkpoint_step": tested}
  # A finished run evaluated again is marked, so readers of metrics.jsonl can tell it from the first test.
  run.writer.write(step, "test", {**record, "reevaluation": True} if finished else record)
  run.progress.print(f"test{f' (the best checkpoint, step {tested})' if tested != step else ''}: {_summary(results)}")
  return results


def _fit(run: Run, state, step: int, data_state):
  """Steps from `step` to the end (or the time limit, early stopping, or a stop signal); returns (state, last
  step, why it ended there: "" at the last step, due_lib.TIME_LIMIT or due_lib.EARLY_STOPPING)."""
  tc = run.train
  per_call, eval_every = tc.steps_per_call, tc.eval_every_steps or run.steps_per_epoch
  ckpt_every = fields.Checkpoint.of(run.config).every_steps
  due = due_lib.Due(tc.log_every, eval_every, ckpt_every, run.total,
             time.monotonic() + 60 * tc.time_limit_minutes if tc.time_limit_minutes > 0 else None)
  feed, step_fns = _feed_and_steps(run, step, data_state, per_call, [tc.log_every, eval_every, ckpt_every])
  try:
    return _run_steps(run, state, step, feed, step_fns, due)
  finally:
    feed.close()


def _run_steps(run: Run, state, step: int, feed: feed_lib.Feed, step_fns: dict, due: due_lib.Due):
  """`_fit`'s loop over `feed`'s calls of the train step."""
  tc, validated = run.train, "validation" in run.data.rows
  sums = steps_lib.train_metrics_init(run.mesh, steps_lib.sum_names(run.data.info))
  prof = profiler.Profiler(fields.Profile.of(run.config), run.workdir, first_step=step, total=run.total)
  interval = interval_lib.Interval(step)
  last_good, flops = run.ckpt.latest_step(), None
  treedef, leaves = jax.tree.structure(state), jax.tree.leaves(state)
  items = interval_lib.timed(feed.items, interval)
  first = next(items, None)  # a Grain pipeline's start-up is part of the run's
  if first is None:
    return state, step, ""
  run.stop.phase = "the train step's compile"
  _compile_first(step_fns, leaves, sums, first, feed)
  run.stop.phase = "the first step"

  for batch, shared, data_state, n in itertools.chain([first], items):
    with jax.transfer_guard("disallow"):  # the step loop proper: no implicit transfer, so no hidden sync
      prof.maybe_start(step)
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        leaves, sums = step_fns[n].on_leaves(leaves, sums, batch, shared)
      step += n
      prof.maybe_stop(step, leaves)
      run.progress.update(n)
    if run.stop.phase:
      _first_step_done(run, sums)
    at_log = due.log(step)
    if at_log and due.out_of_time():
      due.end_at(step, due_lib.TIME_LIMIT)  # finish here as if this were the last step
    at_eval, at_ckpt = due.validate(step), due.checkpoint(step)
    stopping = run.stop.should_stop(at_sync_point=at_log or at_eval, step=step)
    if at_log or at_eval or stopping:
      if flops is None:
        flops = (float("nan"), None) if stopping else _first_interval_end(run, feed, first, sums, leaves, treedef,
                                                                          interval)
      sums = _log(run, sums, step, interval, flops, last_good)
    state = treedef.unflatten(leaves) if at_ckpt or stopping or step >= due.end else None
    validation = _validate(run, state, step) if at_eval and validated else None
    if validation is not None:
      interval.start = time.perf_counter()  # validation time is not training time
      if run.early.update(step, validation):
        due.end_at(step, due_lib.EARLY_STOPPING)  # the validation metric stopped improving: this step is the last
    if at_ckpt or stopping:
      # Never save past a bad step.
      interval_lib.check_finite(jax.device_get(sums), interval.step, tc.on_nonfinite, last_good, run.ckpt)
      t = time.perf_counter()
      _save(run, state, step, data_state, validation)
      interval.checkpoint_block += time.perf_counter() - t
      last_good = step
    if stopping:
      _stop(run, step)
    if step >= due.end:
      break
  if feed_lib.packing_of(run.config, run.data.info):  # what packing saved, in the summary and metrics.jsonl
    stats = data_packing.stats_of(data_state, int(run.data.info["seq_len"]))
    run.writer.write(step, "packing", stats)
    run.progress.print(data_packing.summary(stats, int(run.data.info["seq_len"])))
  return treedef.unflatten(leaves), step, due.why_end


def _feed_and_steps(run: Run, step: int, data_state, per_call: int, periods: list[int]):
  """The data door from `step` on, and the jitted train step for each call size it yields (1 and per_call);
  calls never cross one of `periods` (logging, validation, checkpoints) nor the profiler's first step."""
  boundaries = periods + [fields.Profile.of(run.config).start_step]
  feed = feed_lib.batches(run.data.rows["train"], run.data.train_transform, run.mesh, fields.Feed.of(run.config),
                          start_step=step, data_state=data_state, num_steps=run.total, per_call=per_call,
                          call_sizes=feed_lib.call_sizes(step, run.total, per_call, boundaries),
                          augmented=bool(run.data.info.get("augment")),
                          packing=feed_lib.packing_of(run.config, run.data.info),
                          seq_len=int(run.data.info.get("seq_len", 0)))
  feed = feed_lib.with_shared(feed, "reference", run.reference, run.structure.shardings[0])
  loss = fields.Run.of(run.config).loss
  step_fns = {n: steps_lib.make_train_step(run.structure, run.mesh, loss_kind=loss, steps_per_call=n, feed=feed,
                                           accum_steps=run.train.grad_accum_steps, sums_of=_objective(run))
              for n in {1, per_call}}
  return feed, step_fns


def _objective(run: Run):
  """The metric sums the run trains on: its loss over inputs (packed or not, classes weighted), or preference
  pairs'."""
  return steps_lib.objective(fields.Run.of(run.config).loss, run.data.info, label_smoothing=run.train.label_smoothing,
                             class_weights=_class_weights(run), pairs=fields.Preference.of(run.config))


def _class_weights(run: Run):
  """The loss weight of each class (train.class_weight: losses.class_weights) from the training split's labels;
  None for "none". UserError for data without classes (a regression, a language model)."""
  kind = fields.ClassWeight.of(run.config).class_weight
  if kind == "none":
    return None
  if run.data.info.get("task", "classification") != "classification":
    raise UserError(f"train.class_weight={kind} weighs a classifier's classes; this run's targets are not classes "
                    f"(task {run.data.info.get('task')}); set --config.train.class_weight=none")
  return losses.class_weights(kind, run.data.rows["train"].column("label"), run.data.info["num_classes"])


def _compile_first(step_fns: dict, leaves, sums, first, feed: feed_lib.Feed):
  """Compiles the train step for each call size before the first call, in a worker thread: a stop signal during
  a compile of minutes then ends the run at once (preemption.responsive); the jitted calls find the
  executables in JAX's cache. With steps_per_call > 1, one-step calls still come at epoch, validation and
  checkpoint boundaries: their executable is compiled now too, so that compile never lands in a logged interval."""
  batch, shared, _, n = first

  def compile_all():
    if n > 1:
      step_fns[1].jitted.lower(leaves, sums, feed.one_step_spec(batch, n), shared).compile()
    step_fns[n].jitted.lower(leaves, sums, batch, shared).compile()

  preemption.responsive(compile_all)


def _first_step_done(run: Run, sums):
  """Waits for the first call's end, taking a stop signal at once meanwhile (it ends the run: nothing trained
  yet is worth its save); from here a signal stops after the step in flight, with a checkpoint. The ETA's
  clock starts here, after the compile."""
  preemption.wait_responsive(sums)
  run.stop.started()
  run.progress.first_step_done()


def _first_interval_end(run: Run, feed: feed_lib.Feed, first, sums, leaves, treedef, interval: interval_lib.Interval):
  """Once, at the end of the first logging interval: the model FLOPs of a step (for MFU; XLA's count lowers
  the step again, seconds for a large model) and the compile of the checkpoint fingerprint for the state's
  shapes (else paid inside the first save's blocking part). Their time is taken out of the interval and of
  the ETA's rate. Returns (FLOPs of a step, the devices' peak FLOP/s)."""
  jax.block_until_ready(leaves)  # the interval's steps end first: what follows is timed apart from them
  t = time.perf_counter()
  batch, shared, _, n = first
  with run.progress.excluded():
    flops = _flops_per_step(run, feed.trained_batch_spec(batch, shared, n), sums)
    run.ckpt.warm_up(treedef.unflatten(leaves))
  interval.start += time.perf_counter() - t
  return flops


def _flops_per_step(run: Run, batch_spec, sums) -> tuple[float, flops_lib.Peak | None]:
  """(model FLOPs of one step, the devices' peak FLOP/s with its source, trainer/flops.py `Peak`): the model's
  analytic count if it declares one, else XLA's count of the step for `batch_spec`, the shapes of one step's
  global batch."""
  config = run.config
  per_example = None if run.model else registry.flops_per_example(config.model, run.data.info)
  if per_example:
    per_step = per_example * run.batch_size
  else:
    one = steps_lib.make_train_step(run.structure, run.mesh, loss_kind=fields.Run.of(config).loss,
                                    accum_steps=run.train.grad_accum_steps, sums_of=_objective(run))  # traced only
    per_step = steps_lib.step_flops(one, run.structure, sums, batch_spec)
  return per_step, flops_lib.system_peak(_compute_dtype(config), list(run.mesh.devices.flat))


def _compute_dtype(config) -> str:
  """The model's compute dtype: its `model.dtype` where its sections declare one (the transformers), else
  float32, in which every other built-in model computes."""
  return fields.declared_value(config, "model.dtype") or "float32"


def _stop(run: Run, step: int):
  """A stop signal: once the checkpoint just started is written, exit 0 with the way to resume."""
  run.ckpt.wait()
  run.progress.print(f"stopped by {run.stop.signal_name} after step {step}; checkpoint saved in "
                     f"{run.ckpt.directory}. Run the same command again to resume.")
  raise SystemExit(0)


def _log(run: Run, sums, step: int, interval: interval_lib.Interval, flops: tuple, last_good):
  """Writes the interval's train record (means, throughput, learning rate); returns fresh sums."""
  host_sums = jax.device_get(sums)
  interval_lib.check_finite(host_sums, interval.step, run.train.on_nonfinite, last_good, run.ckpt)
  seconds = time.perf_counter() - interval.start
  record = interval_lib.train_record(host_sums, run.data.info, steps=step - interval.step, seconds=seconds,
                         batch_size=run.batch_size, flops_per_step=flops[0], peak=flops[1])
  # The rate of the interval's last update (optax counts updates from 0).
  record.update(learning_rate=float(run.learning_rate(max(step - 1, 0))),
                input_wait_fraction=interval.input_wait / seconds,
                checkpoint_block_seconds=interval.checkpoint_block, epoch=step / run.steps_per_epoch)
  run.writer.write(step, "train", record)
  run.progress.log(record)
  interval.restart(step)
  return steps_lib.train_metrics_init(run.mesh, steps_lib.sum_names(run.data.info))


def _validate(run: Run, state, step: int) -> dict:
  validation = run.evaluate(state, "validation")
  run.writer.write(step, "validation", validation)
  run.progress.validation(step, step / run.steps_per_epoch, validation)
  return validation


def _save(run: Run, state, step: int, data_state, validation: dict | None):
  """Starts the checkpoint of `step`: the state, the data position, the validation metrics (which rank it
  for the best-N policy) and early stopping's state (whose best step retention keeps)."""
  scalars = _scalars(validation)
  best = run.ckpt.best_metric
  meta = {"step": step, "data": data_state, "validation": scalars}
  if run.early.enabled:
    meta["early_stopping"] = run.early.state()
  run.ckpt.save(step, state, meta, metrics=scalars if scalars and best in scalars else None,
                protect=run.early.best_step)


def _scalars(values):
  return {k: v for k, v in values.items() if isinstance(v, (int, float))} if values else None


def _summary(values: dict) -> str:
  keys = [k for k in ("loss", "accuracy", "macro_f1", "bits_per_byte") if k in values]
  return " ".join(f"{k}={values[k]:.4f}" for k in keys)
