"""SIGTERM/SIGINT: finish the step in flight, agree on a stop step, checkpoint, exit. A second signal
aborts at once."""
import logging
import os
import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


class StopRequest:

  def __init__(self):
    self.requested = False
    self.signal_name = ""
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    if self.requested:
      logging.error("second %s: aborting without a checkpoint", signal.Signals(signum).name)
      os._exit(128 + signum)
    self.requested = True
    self.signal_name = signal.Signals(signum).name

  def should_stop(self, at_sync_point: bool) -> bool:
    """Single process: as soon as asked. Several: only at sync points (logging intervals), where all
    processes share their flags, so every process stops after the same step."""
    if jax.process_count() == 1:
      return self.requested
    if not at_sync_point:
      return False
    flags = multihost_utils.process_allgather(np.asarray(self.requested, np.int32))
    return bool(np.any(flags))

  def restore_default(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
