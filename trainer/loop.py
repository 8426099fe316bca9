"""The training loop: restore or create the state, then step, log, validate, checkpoint, and test.

The loop never waits on the devices inside a step: metric sums stay on the devices and come back only at
logging intervals, validation and checkpoints, so host dispatch runs ahead of the computation.
"""
import time

import jax
import numpy as np

from flaxforge import data as data_lib
from flaxforge import models
from flaxforge.data import pipeline, preprocess
from flaxforge.trainer import checkpoint, evaluate, feed
from flaxforge.trainer import flops as flops_lib
from flaxforge.trainer import mesh as mesh_lib
from flaxforge.trainer import metrics as metrics_lib
from flaxforge.trainer import preemption, profiler, state as state_lib, steps as steps_lib, workdir as workdir_lib
from flaxforge.core.errors import UserError


class NonFiniteLoss(UserError):
  pass


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
  return steps_per_epoch, total


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


def train(config, workdir: str, devices=None) -> dict:
  """Trains (or resumes) the run in `workdir` (on `devices`, default all); returns the final test metrics."""
  workdir = workdir_lib.prepare(workdir)
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  dataset = data_lib.load(config.data)
  info = dataset.info
  rows = {name: pipeline.Rows(src, in_memory=config.data.in_memory) for name, src in dataset.splits.items()}
  steps_per_epoch, total = plan(config, len(rows["train"]), mesh)
  structure, create = state_lib.structure(config, info, mesh, total)
  transform = preprocess.make_transform(info, config.data.label_encoding)

  ckpt = checkpoint.Checkpointer(workdir / workdir_lib.CHECKPOINTS, keep=config.checkpoint.keep,
                                 best_metric=config.checkpoint.best_metric, best_mode=config.checkpoint.best_mode,
                                 keep_best=config.checkpoint.keep_best, async_save=config.checkpoint.async_save)
  writer = metrics_lib.MetricWriter(workdir)
  step, data_state = 0, None
  if ckpt.latest_step() is not None:
    state, meta, step = ckpt.restore(None, structure.abstract)
    data_state = meta.get("data")
  else:
    state = create()
  workdir_lib.save_run(workdir, config, info, dataset.assets)  # after restore: a refused config must not replace it
  n_params = state_lib.parameter_count(structure.abstract)
  progress = metrics_lib.Progress(total, step, enabled=config.train.progress_bar)
  if step:
    progress.print(f"resumed from the checkpoint at step {step} in {ckpt.directory}")
  progress.print(f"{config.model.name}: {n_params:,} parameters; {total} steps "
                 f"({steps_per_epoch} per epoch, batch {config.data.batch_size}) on mesh {dict(mesh.shape)}")

  eval_step = evaluate.make_eval_step(structure, mesh, config, info)
  def run_eval(state, split):
    return evaluate.evaluate(state, eval_step, rows[split], global_batch=config.data.eval_batch_size, mesh=mesh,
                             info=info, transform=transform)

  if step >= total:
    progress.print(f"run in {workdir} already finished at step {step}; evaluating the final state")
  else:
    try:
      state, step = _fit(config, state, step, total, steps_per_epoch, structure, mesh, rows, info, transform,
                         data_state, ckpt, writer, progress, run_eval, workdir)
    finally:
      ckpt.wait()  # an error or exit must not abandon a save in flight
    if step < total:
      progress.print(f"time limit of {config.train.time_limit_minutes} minutes reached after step {step} of "
                     f"{total}; the same command continues from there")
  ckpt.wait()
  progress.close()
  results = {}
  if "test" in rows:
    results = run_eval(state, "test")
    writer.write(step, "test", results)
    progress.print(f"test: {_summary(results)}")
  writer.close()
  ckpt.close()
  return results


def _fit(config, state, step, total, steps_per_epoch, structure, mesh, rows, info, transform, data_state, ckpt,
         writer, progress, run_eval, workdir):
  tc = config.train
  per_call = max(1, tc.steps_per_call)
  eval_every = tc.eval_every_steps or steps_per_epoch
  boundaries = [tc.log_every, eval_every, config.checkpoint.every_steps, config.profile.start_step]
  # Random augmentation differs per batch, so it runs in the host pipeline, never once on a resident split.
  train_transform = preprocess.make_transform(info, config.data.label_encoding, train=True, seed=config.data.seed)
  on_device = feed.resident(rows["train"], train_transform, mesh,
                            "no" if info.get("augment") else config.data.get("on_device", "auto"))
  data = () if on_device is None else (on_device,)
  resident_batch = config.data.batch_size if data else 0
  step_fns = {n: steps_lib.make_train_step(structure, mesh, loss_kind=config.loss, label_smoothing=tc.label_smoothing,
                                          accum_steps=tc.grad_accum_steps, steps_per_call=n,
                                          resident_batch=resident_batch) for n in {1, per_call}}
  sizes = _call_sizes(step, total, per_call, boundaries)
  if data:
    start = data_state["next_index"] if data_state else step
    batches = feed.resident_positions(len(rows["train"]), resident_batch, config.data.seed, start, sizes,
                                      mesh_lib.replicated(mesh))
  else:
    host = pipeline.train_batches(rows["train"], config.data.batch_size, total, seed=config.data.seed,
                                  process_index=jax.process_index(), process_count=jax.process_count(),
                                  transform=train_transform, threads=config.data.threads,
                                  prefetch=config.data.prefetch)
    if data_state:
      host.set_state(data_state)
    batches = feed.prefetch(host, mesh_lib.batch_sharding(mesh), sizes if per_call > 1 else None,
                            mesh_lib.batch_sharding(mesh, leading_axes=1))
  sums = steps_lib.train_metrics_init(mesh)
  stop = preemption.StopRequest()
  prof = profiler.Profiler(config.profile, workdir)
  last_log_step, last_log_time = step, time.perf_counter()
  deadline = time.monotonic() + 60 * tc.time_limit_minutes if tc.time_limit_minutes > 0 else None
  last_good = ckpt.latest_step()
  waited, blocked = [0.0], 0.0  # seconds spent in next(batches) and in ckpt.save since the last record
  flops_per_step = peak = None

  treedef = jax.tree.structure(state)
  leaves = jax.tree.leaves(state)
  if per_call > 1:
    batches = _single_step_compiled_first(batches, step_fns[1], leaves, sums, data, mesh)
  for batch, data_state, n in _timed(batches, waited):
    prof.maybe_start(step)
    leaves, sums = step_fns[n].on_leaves(leaves, sums, batch, *data)
    step += n
    prof.maybe_stop(step, leaves)
    progress.update(n)
    at_log = step % tc.log_every == 0 or step == total
    if at_log and deadline and preemption.any_process(time.monotonic() > deadline):
      total = step  # the time budget is spent: finish here as if this were the last step
    at_eval = step % eval_every == 0 or step == total
    at_ckpt = at_eval or (config.checkpoint.every_steps and step % config.checkpoint.every_steps == 0)
    stopping = stop.should_stop(at_sync_point=at_log or at_eval, step=step)
    if at_log or at_eval or stopping:
      host_sums = jax.device_get(sums)
      sums = steps_lib.train_metrics_init(mesh)
      _check_finite(host_sums, last_log_step, tc.on_nonfinite, last_good, ckpt)
      seconds = time.perf_counter() - last_log_time
      if flops_per_step is None:  # once, after the interval's end: its cost stays out of every interval
        trained_batch = _full_batch(batch, data, config.data.batch_size)
        flops_per_step = _flops_per_step(config, info, structure, mesh, sums, trained_batch, n)
        peak = flops_lib.system_peak_flops(config.model.get("dtype", "float32"), list(mesh.devices.flat))
        ckpt.warm_up(treedef.unflatten(leaves))  # the save's fingerprint compiles here, not in the first save
      record = _train_record(host_sums, info, steps=step - last_log_step, seconds=seconds,
                             batch_size=config.data.batch_size, flops_per_step=flops_per_step, peak=peak)
      record.update(input_wait_fraction=waited[0] / seconds, checkpoint_block_seconds=blocked,
                    epoch=step / steps_per_epoch)
      waited[0], blocked = 0.0, 0.0
      writer.write(step, "train", record)
      progress.update(0, loss=record["loss"], ex_s=round(record["examples_per_second"]))
      last_log_step, last_log_time = step, time.perf_counter()
    state = treedef.unflatten(leaves) if at_eval or at_ckpt or stopping or step >= total else None
    validation = None
    if at_eval and "validation" in rows:
      validation = run_eval(state, "validation")
      writer.write(step, "validation", validation)
      progress.print(f"step {step} (epoch {step / steps_per_epoch:.2f}) validation: {_summary(validation)}")
      last_log_time = time.perf_counter()
    if at_ckpt or stopping:
      _check_finite(jax.device_get(sums), last_log_step, tc.on_nonfinite, last_good, ckpt)  # never checkpoint past a bad step
      meta = {"step": step, "data": data_state, "validation": _scalars(validation)}
      best = config.checkpoint.best_metric
      t = time.perf_counter()
      ckpt.save(step, state, meta, metrics=_scalars(validation) if validation and best in validation else None)
      blocked += time.perf_counter() - t
      last_good = step
    if stopping:
      ckpt.wait()
      progress.print(f"stopped by {stop.signal_name} after step {step}; checkpoint saved in {ckpt.directory}. "
                     "Run the same command again to resume.")
      raise SystemExit(0)
    if step >= total:
      break
  stop.restore_default()
  return treedef.unflatten(leaves), step


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


def _flops_per_step(config, info, structure, mesh, sums, batch, steps_in_batch: int) -> float:
  """Model FLOPs of one step: the model's analytic count if it declares one, else XLA's count of the step."""
  per_example = models.flops_per_example(config.model, info)
  if per_example:
    return per_example * config.data.batch_size
  one = steps_lib.make_train_step(structure, mesh, loss_kind=config.loss,
                                  accum_steps=config.train.grad_accum_steps)  # traced only, never compiled
  return steps_lib.step_flops(one, structure, sums, batch, leading_axes=int(steps_in_batch > 1))


def _full_batch(batch, data, global_batch: int):
  """The shapes of the batch the step trains on (the gathered rows when the split lies on the devices)."""
  if not data:
    return batch
  lead = np.shape(batch["step"]) + (global_batch,)
  return {**{k: jax.ShapeDtypeStruct(lead + v.shape[1:], v.dtype) for k, v in data[0].items()},
          "mask": jax.ShapeDtypeStruct(lead, np.float32)}


def _single_step_compiled_first(items, step_fn, leaves, sums, data, mesh):
  """With steps_per_call > 1, one-step calls still come at epoch, eval and checkpoint boundaries. Compiles
  that executable before the first call, so its compile time does not land inside a logged interval."""
  items = iter(items)
  first = next(items, None)
  if first is None:
    return
  batch, _, n = first
  if n > 1:
    if data:  # resident: the position's step numbers become one
      one = dict(batch, step=jax.ShapeDtypeStruct((), np.int32))
    else:
      one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype,
                                                         sharding=mesh_lib.batch_sharding(mesh)), batch)
    step_fn.lower(leaves, sums, one, *data).compile()  # jit reuses this executable
  yield first
  yield from items


def _timed(items, waited: list):
  """Yields from `items`, adding the seconds each fetch took to waited[0]: the time the loop waited for input."""
  items = iter(items)
  while True:
    t = time.perf_counter()
    try:
      item = next(items)
    except StopIteration:
      return
    waited[0] += time.perf_counter() - t
    yield item


def _check_finite(host_sums, sums_since: int, on_nonfinite, last_good, ckpt):
  """Stops the run (when so configured) if a step since `sums_since` had a non-finite loss or gradient."""
  if host_sums["nonfinite"] and on_nonfinite == "stop":
    ckpt.wait()  # the last good checkpoint may still be writing
    where = f"step {last_good} in {ckpt.directory}" if last_good is not None else "none (no checkpoint yet)"
    raise NonFiniteLoss(f"non-finite loss or gradient at step {sums_since + int(host_sums['first_nonfinite_step'])}; the last "
                        f"good checkpoint is {where}. Lower the learning rate or set "
                        "--config.train.on_nonfinite=skip to drop such updates and go on")


def _scalars(values):
  return {k: v for k, v in values.items() if isinstance(v, (int, float))} if values else None


def _summary(values: dict) -> str:
  keys = [k for k in ("loss", "accuracy", "macro_f1", "bits_per_byte") if k in values]
  return " ".join(f"{k}={values[k]:.4f}" for k in keys)
