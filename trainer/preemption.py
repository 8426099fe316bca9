"""SIGTERM/SIGINT: finish the step in flight, agree on a stop step, checkpoint, exit. A second signal
aborts at once, saying what is on disk (the checkpointer's `on_disk`).

After `jax.distributed.initialize` a C++ preemption notifier owns SIGTERM; installing our handler later
replaces it (measured: a SIGTERM to one of 2 processes stops both at the same step, both exit 0). A
SIGTERM that lands before our handler exists (start-up) is still seen by that notifier, which is why the
multi-process check also asks JAX's preemption sync point.
"""
import os
import signal
import sys
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


class StopRequest:

  def __init__(self, on_disk=lambda: "see the checkpoints directory"):
    self.on_disk = on_disk
    self.requested = False
    self.signal_name = ""
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    if self.requested:
      try:
        where = self.on_disk()
      except Exception:  # pylint: disable=broad-except  (aborting must not fail)
        where = "see the checkpoints directory"
      print(f"second {signal.Signals(signum).name}: aborting now; {where}. Run the same command again to resume.",
            file=sys.stderr, flush=True)
      os._exit(128 + signum)
    self.requested = True
    self.signal_name = signal.Signals(signum).name

  def should_stop(self, at_sync_point: bool, step: int | None = None) -> bool:
    """Single process: as soon as asked. Several: only where all processes decide together, so every
    process stops after the same step: at sync points (logging intervals), where they share their flags,
    or at JAX's preemption sync point (which must be asked at every step)."""
    if jax.process_count() == 1:
      return self.requested
    if step is not None and _preemption_notice(step):
      self.signal_name = self.signal_name or "a preemption notice"
      return True
    if not at_sync_point:
      return False
    stop = any_process(self.requested)
    if stop and not self.requested:
      self.signal_name = "a signal to another process"
    return stop

  def restore_default(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


def any_process(flag: bool) -> bool:
  """True on every process if `flag` is true on any (a collective: call it at the same step everywhere)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag, np.int32))))


def _preemption_notice(step: int) -> bool:
  try:
    return multihost_utils.reached_preemption_sync_point(step)
  except RuntimeError:  # no preemption sync manager in this cluster
    return False
