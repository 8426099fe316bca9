"""The training loop: restore or create the state, then step, log, validate, checkpoint, and test.

The loop never waits on the devices inside a step: metric sums stay on the devices and come back only at
logging intervals, validation and checkpoints, so host dispatch runs ahead of the computation. Between
those points the loop runs with implicit host<->device transfers disallowed (`jax.transfer_guard`), so a
stray sync inside the step loop is an error rather than a silent slowdown.
"""
import dataclasses
import sys
import time

import jax
import numpy as np

from flaxforge.models import registry
from flaxforge.core.errors import UserError
from flaxforge.trainer import checkpoint, early_stopping, evaluate, feed as feed_lib, fields
from flaxforge.trainer import flops as flops_lib
from flaxforge.trainer import mesh as mesh_lib
from flaxforge.trainer import metrics as metrics_lib
from flaxforge.trainer import optim, preemption, profiler, setup, state as state_lib, steps as steps_lib
from flaxforge.trainer import warm_start, workdir as workdir_lib


class NonFiniteLoss(UserError):
  pass


@dataclasses.dataclass
class Run:
  """What one training run is built from, fixed once it starts."""
  config: object
  workdir: object
  mesh: object
  data: setup.Data
  structure: state_lib.Structure
  ckpt: checkpoint.Checkpointer
  writer: metrics_lib.MetricWriter
  progress: metrics_lib.Progress
  stop: preemption.StopRequest
  steps_per_epoch: int
  total: int
  early: early_stopping.EarlyStopping
  model: object = None  # the Python API's model factory, if one was given

  def evaluate(self, state, split: str) -> dict:
    eval_step = evaluate.make_eval_step(self.structure, self.mesh, self.config, self.data.info)
    return evaluate.evaluate(state, eval_step, self.data.rows[split], global_batch=self.config.data.eval_batch_size,
                             mesh=self.mesh, info=self.data.info, transform=self.data.transform)


def plan(config, num_train: int, mesh) -> tuple[int, int]:
  """(steps per epoch, total steps), refusing batch sizes the devices and processes cannot split."""
  batch, divisor = config.data.batch_size, mesh_lib.batch_divisor(mesh)
  if batch % divisor or batch % jax.process_count():
    raise UserError(f"batch size {batch} does not divide over {divisor} data-parallel devices "
                    f"(mesh data*fsdp) and {jax.process_count()} processes; use a multiple of "
                    f"{np.lcm(divisor, jax.process_count())}, e.g. --config.data.batch_size="
                    f"{max(divisor, batch // divisor * divisor)}")
  accum = config.train.grad_accum_steps
  if (batch // divisor) % accum:
    raise UserError(f"batch size {batch} over {divisor} devices does not split into "
                    f"{accum} micro-batches; make batch_size a multiple of {divisor * accum}")
  steps_per_epoch = num_train // batch
  if steps_per_epoch == 0:
    raise UserError(f"batch size {batch} is larger than the {num_train} training examples; lower "
                    "--config.data.batch_size")
  total = config.train.num_steps if config.train.num_steps > 0 else config.train.num_epochs * steps_per_epoch
  if total == 0:
    raise UserError("train.num_epochs and train.num_steps are both 0: set --config.train.num_epochs=N (or "
                    "--config.train.num_steps=N) to a positive number")
  return steps_per_epoch, total


def train(config, workdir: str, devices=None, *, model=None) -> dict:
  """Trains (or resumes) the run in `workdir` (on `devices`, default all); returns the final test metrics.
  `model`: a factory `(cfg, info, rngs) -> nnx.Module` used instead of `config.model.name`, which then
  records it as 'module:name' (a resume with another function is another run)."""
  fields.validate(config)
  if model is not None:
    config = config.copy_and_resolve_references()
    config.model.name = f"{model.__module__}:{model.__qualname__}"
  stop = preemption.StopRequest()  # from the start: a SIGTERM during start-up stops after the first step
  try:
    return _train(config, workdir, devices, stop, model)
  finally:
    stop.restore_default()


def _train(config, workdir: str, devices, stop: preemption.StopRequest, model) -> dict:
  workdir = workdir_lib.prepare(workdir)  # and its lease: one training per work directory
  config, config_changes = workdir_lib.check_config(workdir, config)  # refuses a change to what defines the run
  workdir_lib.check_source(workdir, config)  # refuses an edited input file before preparing it
  setup.check_positions(config)
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  data = setup.load_data(config)
  data_record = workdir_lib.check_data(workdir, config, data.dataset)  # refuses other data
  steps_per_epoch, total = plan(config, len(data.rows["train"]), mesh)
  structure, create = state_lib.structure(config, data.info, mesh, total, model=model)
  ckpt = setup.checkpointer(config, workdir)
  stop.on_disk = ckpt.on_disk
  step, data_state, meta, warm_line = 0, None, {}, None
  if ckpt.latest_step() is not None:
    state, meta, step = ckpt.restore(None, structure.abstract)
    data_state = meta.get("data")
  else:
    state = create()
    if config.train.get("init_from"):  # a new run only: a resume ignores it
      state, warm_line = warm_start.apply(config.train.init_from, state, mesh, model)
  early = early_stopping.EarlyStopping.from_config(config.train.get("early_stopping"), meta.get("early_stopping"))
  if early.enabled and "validation" not in data.rows:
    raise UserError("early stopping watches the validation split, which this dataset lacks; set "
                    "--config.train.early_stopping.metric='' or use data with a validation split")
  workdir_lib.save_run(workdir, config, data.info, data.assets, data_record)  # after restore: a refused config must not replace it
  progress = metrics_lib.Progress(total, step, enabled=config.train.progress_bar,
                                  time_limit_minutes=config.train.time_limit_minutes,
                                  best_metric=config.checkpoint.best_metric, best_mode=config.checkpoint.best_mode)
  finished = step >= total or early.stopped
  run = Run(config, workdir, mesh, data, structure, ckpt, metrics_lib.MetricWriter(workdir, tensorboard=not finished),
            progress, stop, steps_per_epoch, total, early, model)
  if config_changes:
    run.writer.write(step, "config_change", {"changes": config_changes})
  if step:
    progress.print(f"resumed from the checkpoint at step {step} in {ckpt.directory}")
  if warm_line:
    progress.print(warm_line)
  warmup_warning = optim.warmup_warning(config.optimizer, total)
  if warmup_warning:
    print(warmup_warning, file=sys.stderr)
  progress.print(f"{config.model.name}: {state_lib.parameters_line(config.model, structure.abstract)}; {total} "
                 f"steps ({steps_per_epoch} per epoch, batch {config.data.batch_size}) on mesh {dict(mesh.shape)}")

  if finished:
    progress.print(f"run in {workdir} already finished at step {step}"
                   f"{' (stopped early)' if early.stopped else ''}; evaluating "
                   f"{'its best checkpoint' if early.enabled else 'the final state'}")
  else:
    try:
      state, step = _fit(run, state, step, data_state)
    finally:
      ckpt.wait()  # an error or exit must not abandon a save in flight
    if early.stopped:
      progress.print(early.describe(step))
    elif step < total:
      progress.print(f"time limit of {config.train.time_limit_minutes} minutes reached after step {step} of "
                     f"{total}; the same command continues from there")
  progress.close(ckpt.steps(), workdir, validated="validation" in data.rows)
  results = _test(run, state, step, finished) if "test" in data.rows else {}
  run.writer.close()
  ckpt.close()
  workdir_lib.release(workdir)
  return results


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


@dataclasses.dataclass
class _Interval:
  """The logging interval in progress: where it started and what the host spent waiting in it."""
  step: int
  start: float = dataclasses.field(default_factory=time.perf_counter)
  input_wait: float = 0.0  # seconds in next(batches)
  checkpoint_block: float = 0.0  # seconds in ckpt.save

  def restart(self, step: int):
    self.step, self.start, self.input_wait, self.checkpoint_block = step, time.perf_counter(), 0.0, 0.0


def _fit(run: Run, state, step: int, data_state):
  """Steps from `step` to the end (or the time limit, or a stop signal); returns (state, last step)."""
  config, tc = run.config, run.config.train
  per_call, eval_every = max(1, tc.steps_per_call), tc.eval_every_steps or run.steps_per_epoch
  feed, step_fns = _feed_and_steps(run, step, data_state, per_call, eval_every)
  sums = steps_lib.train_metrics_init(run.mesh)
  prof = profiler.Profiler(config.profile, run.workdir, first_step=step, total=run.total)
  interval = _Interval(step)
  deadline = time.monotonic() + 60 * tc.time_limit_minutes if tc.time_limit_minutes > 0 else None
  end, last_good, flops = run.total, run.ckpt.latest_step(), None
  treedef, leaves = jax.tree.structure(state), jax.tree.leaves(state)
  items = _timed(feed.items, interval)
  if per_call > 1:
    items = _single_step_compiled_first(items, step_fns[1], leaves, sums, feed)

  for batch, shared, data_state, n in items:
    with jax.transfer_guard("disallow"):  # the step loop proper: no implicit transfer, so no hidden sync
      prof.maybe_start(step)
      leaves, sums = step_fns[n].on_leaves(leaves, sums, batch, shared)
      step += n
      prof.maybe_stop(step, leaves)
      run.progress.update(n)
    at_log = step % tc.log_every == 0 or step == end
    if at_log and deadline and preemption.any_process(time.monotonic() > deadline):
      end = step  # the time budget is spent: finish here as if this were the last step
    at_eval = step % eval_every == 0 or step == end
    at_ckpt = at_eval or (config.checkpoint.every_steps and step % config.checkpoint.every_steps == 0)
    stopping = run.stop.should_stop(at_sync_point=at_log or at_eval, step=step)
    if at_log or at_eval or stopping:
      if flops is None:  # once, after the interval's end: its cost stays out of every interval
        flops = _flops_per_step(run, feed.trained_batch_spec(batch, shared, n), sums)
        run.ckpt.warm_up(treedef.unflatten(leaves))  # the save's fingerprint compiles here, not in the first save
      sums = _log(run, sums, step, interval, flops, last_good)
    state = treedef.unflatten(leaves) if at_eval or at_ckpt or stopping or step >= end else None
    validation = _validate(run, state, step) if at_eval and "validation" in run.data.rows else None
    if validation is not None:
      interval.start = time.perf_counter()  # validation time is not training time
      if run.early.update(step, validation):
        end = step  # the validation metric stopped improving: this step is the last
    if at_ckpt or stopping:
      _check_finite(jax.device_get(sums), interval.step, tc.on_nonfinite, last_good, run.ckpt)  # never save past a bad step
      t = time.perf_counter()
      _save(run, state, step, data_state, validation)
      interval.checkpoint_block += time.perf_counter() - t
      last_good = step
    if stopping:
      _stop(run, step)
    if step >= end:
      break
  return treedef.unflatten(leaves), step


def _feed_and_steps(run: Run, step: int, data_state, per_call: int, eval_every: int):
  """The data door from `step` on, and the jitted train step for each call size it yields (1 and per_call)."""
  config, tc = run.config, run.config.train
  boundaries = [tc.log_every, eval_every, config.checkpoint.every_steps, config.profile.start_step]
  feed = feed_lib.batches(run.data.rows["train"], run.data.train_transform, run.mesh, config.data, start_step=step,
                          data_state=data_state, num_steps=run.total, per_call=per_call,
                          call_sizes=_call_sizes(step, run.total, per_call, boundaries),
                          augmented=bool(run.data.info.get("augment")))
  step_fns = {n: steps_lib.make_train_step(
      run.structure, run.mesh, loss_kind=config.loss, label_smoothing=tc.label_smoothing,
      accum_steps=tc.grad_accum_steps, steps_per_call=n, take=feed.take, batch_sharding=feed.batch_shardings(n),
      shared_sharding=feed.shared_shardings) for n in {1, per_call}}
  return feed, step_fns


def _stop(run: Run, step: int):
  """A stop signal: once the checkpoint just started is written, exit 0 with the way to resume."""
  run.ckpt.wait()
  run.progress.print(f"stopped by {run.stop.signal_name} after step {step}; checkpoint saved in "
                     f"{run.ckpt.directory}. Run the same command again to resume.")
  raise SystemExit(0)


def _log(run: Run, sums, step: int, interval: _Interval, flops: tuple, last_good):
  """Writes the interval's train record (means, throughput, learning rate); returns fresh sums."""
  host_sums = jax.device_get(sums)
  _check_finite(host_sums, interval.step, run.config.train.on_nonfinite, last_good, run.ckpt)
  seconds = time.perf_counter() - interval.start
  record = _train_record(host_sums, run.data.info, steps=step - interval.step, seconds=seconds,
                         batch_size=run.config.data.batch_size, flops_per_step=flops[0], peak=flops[1])
  # The rate of the interval's last update (optax counts updates from 0).
  record.update(learning_rate=float(optim.schedule(run.config.optimizer, run.total)(max(step - 1, 0))),
                input_wait_fraction=interval.input_wait / seconds,
                checkpoint_block_seconds=interval.checkpoint_block, epoch=step / run.steps_per_epoch)
  run.writer.write(step, "train", record)
  run.progress.log(record)
  interval.restart(step)
  return steps_lib.train_metrics_init(run.mesh)


def _validate(run: Run, state, step: int) -> dict:
  validation = run.evaluate(state, "validation")
  run.writer.write(step, "validation", validation)
  run.progress.validation(step, step / run.steps_per_epoch, validation)
  return validation


def _save(run: Run, state, step: int, data_state, validation: dict | None):
  """Starts the checkpoint of `step`: the state, the data position, the validation metrics (which rank it
  for the best-N policy) and early stopping's state (whose best step retention keeps)."""
  scalars = _scalars(validation)
  best = run.config.checkpoint.best_metric
  meta = {"step": step, "data": data_state, "validation": scalars}
  if run.early.enabled:
    meta["early_stopping"] = run.early.state()
  run.ckpt.save(step, state, meta, metrics=scalars if scalars and best in scalars else None,
                protect=run.early.best_step)


def _call_sizes(start: int, total: int, per_call: int, boundaries: list[int]):
  """Steps per call, never crossing a logging, validation or checkpoint boundary: `per_call` while a whole
  call fits before the next boundary, single steps for the rest. Only two call sizes, so two compiles."""
  step = start
  while step < total:
    stop = min([total] + [(step // b + 1) * b for b in boundaries if b > 0])
    for _ in range((stop - step) // per_call):
      yield per_call
    for _ in range((stop - step) % per_call):
      yield 1
    step = stop


def _train_record(host_sums, info, *, steps, seconds, batch_size, flops_per_step, peak) -> dict:
  """Means over the logging interval from the step's metric sums, and its throughput."""
  record = metrics_lib.derive(host_sums, info)
  record["grad_norm"] = float(host_sums["grad_norm_sum"]) / max(float(host_sums["steps"]), 1.0)
  record["nonfinite_steps"] = int(host_sums["nonfinite"])
  record["examples_per_second"] = steps * batch_size / seconds
  if info.get("seq_len"):
    record["tokens_per_second"] = record["examples_per_second"] * info["seq_len"]
  if peak and np.isfinite(flops_per_step):
    record["mfu"] = flops_per_step * steps / seconds / peak
  return record


def _flops_per_step(run: Run, batch_spec, sums) -> tuple[float, float | None]:
  """(model FLOPs of one step, the devices' peak FLOP/s): the model's analytic count if it declares one,
  else XLA's count of the step for `batch_spec`, the shapes of one step's global batch."""
  config = run.config
  per_example = None if run.model else registry.flops_per_example(config.model, run.data.info)
  if per_example:
    per_step = per_example * config.data.batch_size
  else:
    one = steps_lib.make_train_step(run.structure, run.mesh, loss_kind=config.loss,
                                    accum_steps=config.train.grad_accum_steps)  # traced only, never compiled
    per_step = steps_lib.step_flops(one, run.structure, sums, batch_spec)
  peak = flops_lib.system_peak_flops(config.model.get("dtype", "float32"), list(run.mesh.devices.flat))
  return per_step, peak


def _single_step_compiled_first(items, step_fn, leaves, sums, feed: feed_lib.Feed):
  """With steps_per_call > 1, one-step calls still come at epoch, eval and checkpoint boundaries. Compiles
  that executable before the first call, so its compile time does not land inside a logged interval."""
  first = next(items, None)
  if first is None:
    return
  batch, shared, _, n = first
  if n > 1:
    step_fn.jitted.lower(leaves, sums, feed.one_step_spec(batch, n), shared).compile()  # jit reuses it
  yield first
  yield from items


def _timed(items, interval: _Interval):
  """Yields from `items`, adding the seconds each fetch took to the interval's input wait."""
  items = iter(items)
  while True:
    t = time.perf_counter()
    try:
      item = next(items)
    except StopIteration:
      return
    interval.input_wait += time.perf_counter() - t
    yield item


def _check_finite(host_sums, sums_since: int, on_nonfinite, last_good, ckpt):
  """Stops the run (when so configured) if a step since `sums_since` had a non-finite loss or gradient."""
  if host_sums["nonfinite"] and on_nonfinite == "stop":
    ckpt.wait()  # the last good checkpoint may still be writing
    where = f"step {last_good} in {ckpt.directory}" if last_good is not None else "none (no checkpoint yet)"
    raise NonFiniteLoss(f"non-finite loss or gradient at step {sums_since + int(host_sums['first_nonfinite_step'])}; "
                        f"the last good checkpoint is {where}. Lower the learning rate or set "
                        "--config.train.on_nonfinite=skip to drop such updates and go on")


def _scalars(values):
  return {k: v for k, v in values.items() if isinstance(v, (int, float))} if values else None


def _summary(values: dict) -> str:
  keys = [k for k in ("loss", "accuracy", "macro_f1", "bits_per_byte") if k in values]
  return " ".join(f"{k}={values[k]:.4f}" for k in keys)
