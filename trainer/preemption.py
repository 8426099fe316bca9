"""SIGTERM/SIGINT. Once the first step has finished: finish the step in flight, agree on a stop step,
checkpoint, exit. Before (start-up, data preparation, the first compile and the first step), a single
process has nothing new to save, so a signal ends the run at once (`Stopped`). A second signal aborts at
once, saying what is on disk (the checkpointer's `on_disk`): it ends the process, or in a Jupyter kernel, which
holds the user's other work, raises KeyboardInterrupt.

After `jax.distributed.initialize` a C++ preemption notifier owns SIGTERM; installing our handler later
replaces it (measured: a SIGTERM to one of 2 processes stops both at the same step, both exit 0). A
SIGTERM that lands before our handler exists (start-up) is still seen by that notifier, which is why the
multi-process check also asks JAX's preemption sync point. Several processes stop together even in
start-up: each stops after the first step, where they can agree.
"""
import atexit
import os
import signal
import sys
import threading
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from flaxforge.trainer import progress


class Stopped(BaseException):
  """A stop signal before the first step finished. A BaseException, as KeyboardInterrupt is: no `except
  Exception` on the way out (a checkpoint read's "damaged step" fallback, say) may take it for an error."""


class StopRequest:

  def __init__(self, on_disk=lambda: "see the checkpoints directory"):
    self.on_disk = on_disk
    self.requested = False
    self.signal_name = ""
    self.phase = "start-up"  # what the run is doing until its first step has finished; "" after
    self._alone = jax.process_count() == 1
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):
    del frame
    if self.requested:
      try:
        where = self.on_disk()
      except Exception:  # pylint: disable=broad-except  (aborting must not fail)
        where = "see the checkpoints directory"
      if progress.in_notebook():  # the kernel holds the user's work: end the call, not the process
        print(f"second {signal.Signals(signum).name}: aborting now; {where}. Call flaxforge.train again to resume.",
              file=sys.stderr, flush=True)
        raise KeyboardInterrupt
      print(f"second {signal.Signals(signum).name}: aborting now; {where}. Run the same command again to resume.",
            file=sys.stderr, flush=True)
      os._exit(128 + signum)
    self.requested = True
    self.signal_name = signal.Signals(signum).name
    if self.phase and self._alone:
      raise Stopped(self.signal_name)

  def started(self):
    """The first step has finished: from here a signal stops the run after the step in flight, with a checkpoint."""
    self.phase = ""

  def should_stop(self, at_sync_point: bool, step: int | None = None) -> bool:
    """Single process: as soon as asked. Several: only where all processes decide together, so every
    process stops after the same step: at sync points (logging intervals), where they share their flags,
    or at JAX's preemption sync point (which must be asked at every step)."""
    if self._alone:
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

  def restore(self):
    """The handlers found at the start again (Python's in a command; in a Jupyter kernel, the kernel's, by
    which its interrupt button raises KeyboardInterrupt: SIGINT's default action would end the kernel)."""
    for sig, previous in self._previous.items():
      signal.signal(sig, signal.SIG_DFL if previous is None else previous)  # None: set outside Python


def responsive(fn, *args):
  """`fn(*args)` (an XLA compile: seconds to minutes of C++) in a worker thread while this thread waits in
  short sleeps. Python runs signal handlers only in the main thread and only between bytecodes, so a stop
  signal during a compile on this thread would wait for the compile's end. If a signal ends the run while
  `fn` still runs, the process exits without waiting for it (`_abandoned`)."""
  done = {}

  def work():
    try:
      done["value"] = fn(*args)
    except BaseException as e:  # pylint: disable=broad-except  (raised in the caller's thread)
      done["error"] = e

  thread = threading.Thread(target=work, daemon=True, name="flaxforge-compile")
  thread.start()
  _wait(lambda: not thread.is_alive(), thread)
  if "error" in done:
    raise done["error"]
  return done["value"]


def wait_responsive(arrays):
  """Waits for `arrays` (the first step's output) in short sleeps, so a stop signal is taken at once; the
  process then exits without waiting for the step."""
  _wait(lambda: all(x.is_ready() for x in jax.tree.leaves(arrays)), arrays)


def _wait(done, work):
  """Sleeps in short steps until `done()`; a stop meanwhile abandons `work` (see `_exit_without_waiting`)."""
  try:
    while not done():
      time.sleep(0.01)
  except Stopped:
    _abandoned.append(work)
    raise


_abandoned = []  # XLA work a stop left running: a compile (its thread) or the first step (its output)


def _exit_without_waiting():
  """At exit, after a stop abandoned a compile or a step: end the process now (os._exit), with the stop's exit
  status 0. Interpreter shutdown would wait for a running step, and abort (SIGABRT) under a running compile.
  Exit hooks run in reverse order of registration: this one, registered at import, runs after the work
  directory's (workdir.py imports this module first), so the lease is still released, and before JAX's
  (registered when jax is imported), whose backend clean-up is what is skipped."""
  if _abandoned:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


atexit.register(_exit_without_waiting)


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
