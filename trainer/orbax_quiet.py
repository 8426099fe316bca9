"""Quiet failures: after a damaged checkpoint read or a full disk, Orbax, TensorStore and asyncio each report
the same failure again (tracebacks through absl's logger, `sys.unraisablehook`, asyncio's "exception was never
retrieved" and thread hooks), dozens of times, around the one line the checkpointer already said it in.
These filters drop those reports, and only those; `install` is called by `Checkpointer.__init__`.
"""
import errno
import logging
import sys
import threading

_installed = []


def install():
  """Drops Orbax's logged traceback of a no-space failure, which `Checkpointer` reports in one line (once)."""
  if not _installed:
    logging.getLogger("absl").addFilter(_OrbaxNoSpace())
    _installed.append(True)


class _OrbaxNoSpace(logging.Filter):
  """Orbax logs a no-space failure with its traceback before raising it; the UserError says it in one line."""

  def filter(self, record):
    return not ("orbax" in record.pathname and record.exc_info and is_no_space(record.exc_info[1]))


def no_space_at_exit():
  """After the one-line no-space error, the exit's own flushes (TensorBoard's writer) fail the same way;
  their reports, and only those, are dropped."""
  previous_thread = threading.excepthook

  def thread(args):
    if not (is_no_space(args.exc_value) or "handle is closed" in str(args.exc_value)):
      previous_thread(args)
  threading.excepthook = thread


def abandoned_reads():
  """A failed read of a damaged step closes Orbax's event loop while TensorStore still completes its other
  reads. Each of those then reports through sys.unraisablehook ('Event loop is closed', or the damaged step's
  read error again) or asyncio's 'Task exception was never retrieved': dozens of tracebacks for a step
  already reported in one line. Those, and only those, are dropped."""
  _drop_reports(_is_abandoned_read, _AbandonedRead())


def abandoned_writes():
  """The same for a save that runs out of space: its other writes report 'Event loop is closed', the
  no-space error again, or asyncio's 'Future exception was never retrieved' (up to 100 traceback lines on a
  full tmpfs, some before the save's one-line error is raised). Those, and only those, are dropped."""
  _drop_reports(_is_abandoned_write, _AbandonedWrite())


def _drop_reports(lost, log_filter: logging.Filter):
  """Drops the sys.unraisablehook reports and asyncio log records of errors `lost` recognises (once)."""
  previous = sys.unraisablehook
  if lost in getattr(previous, "drops", ()):
    return

  def hook(unraisable):
    if not lost(unraisable.exc_value):
      previous(unraisable)
  hook.drops = (*getattr(previous, "drops", ()), lost)
  sys.unraisablehook = hook
  logging.getLogger("asyncio").addFilter(log_filter)


class _AbandonedRead(logging.Filter):
  """asyncio's 'Task exception was never retrieved' for an abandoned read (see `abandoned_reads`)."""

  def filter(self, record):
    never = "never retrieved" in str(getattr(record, "msg", ""))
    return not (never and record.exc_info and self.lost(record.exc_info[1]))

  def lost(self, error) -> bool:
    return _is_abandoned_read(error)


class _AbandonedWrite(_AbandonedRead):
  """asyncio's '... exception was never retrieved' for a write a full disk failed (`abandoned_writes`)."""

  def lost(self, error) -> bool:
    return _is_abandoned_write(error)


def _is_abandoned_read(error: BaseException | None) -> bool:
  """Whether `error` or one it wraps is a read of a damaged step: TensorStore's DATA_LOSS, bare or wrapped in
  Orbax's 'Encountered error while reading array index', or the closed event loop it was given up on."""
  return any("DATA_LOSS" in str(e) or "Encountered error while reading array" in str(e) or _loop_closed(e)
             for e in _chain(error))


def _is_abandoned_write(error: BaseException | None) -> bool:
  """Whether `error` is a write a full disk failed, or the closed event loop it was given up on."""
  return is_no_space(error) or _loop_closed(error)


def _loop_closed(error: BaseException | None) -> bool:
  return isinstance(error, RuntimeError) and "Event loop is closed" in str(error)


def is_no_space(error: BaseException | None) -> bool:
  """Whether `error`, or an exception it wraps, is ENOSPC or EDQUOT (quota), or says so in its text."""
  return any(getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(e)
             for e in _chain(error))


def _chain(error: BaseException | None):
  """`error` and the exceptions it wraps (its causes and contexts), each once."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__
