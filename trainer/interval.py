"""A logging interval of the loop: where it started, what the host waited for in it (input, checkpoint
saves), and its train record (metric means, throughput, MFU), with the non-finite check behind every record
and save."""
import dataclasses
import time

import numpy as np

from flaxforge.core.errors import UserError
from flaxforge.trainer import metrics as metrics_lib


class NonFiniteLoss(UserError):
  pass


@dataclasses.dataclass
class Interval:
  """The logging interval in progress: where it started and what the host spent waiting in it."""
  step: int
  start: float = dataclasses.field(default_factory=time.perf_counter)
  input_wait: float = 0.0  # seconds in next(batches)
  checkpoint_block: float = 0.0  # seconds in ckpt.save

  def restart(self, step: int):
    self.step, self.start, self.input_wait, self.checkpoint_block = step, time.perf_counter(), 0.0, 0.0


def timed(items, interval: Interval):
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


def train_record(host_sums, info, *, steps, seconds, batch_size, flops_per_step, peak) -> dict:
  """Means over the logging interval from the step's metric sums, and its throughput; `mfu` = the model
  FLOPs done / seconds / `peak` (a trainer/flops.py `Peak`, or None when unknown), with the peak it used
  (`peak_flops`, `peak_source`)."""
  record = metrics_lib.derive(host_sums, info)
  record["grad_norm"] = float(host_sums["grad_norm_sum"]) / max(float(host_sums["steps"]), 1.0)
  record["nonfinite_steps"] = int(host_sums["nonfinite"])
  record["examples_per_second"] = steps * batch_size / seconds
  if info.get("seq_len"):
    record["tokens_per_second"] = record["examples_per_second"] * info["seq_len"]
  if peak and np.isfinite(flops_per_step):
    record.update(mfu=flops_per_step * steps / seconds / peak.flops, peak_flops=peak.flops,
                  peak_source=peak.source)
  return record


def check_finite(host_sums, sums_since: int, on_nonfinite, last_good, ckpt):
  """Stops the run (when so configured) if a step since `sums_since` had a non-finite loss or gradient."""
  if host_sums["nonfinite"] and on_nonfinite == "stop":
    ckpt.wait()  # the last good checkpoint may still be writing
    where = f"step {last_good} in {ckpt.directory}" if last_good is not None else "none (no checkpoint yet)"
    raise NonFiniteLoss(f"non-finite loss or gradient at step {sums_since + int(host_sums['first_nonfinite_step'])}; "
                        f"the last good checkpoint is {where}. Lower the learning rate or set "
                        "--config.train.on_nonfinite=skip to drop such updates and go on")
