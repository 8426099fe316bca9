"""Training progress (stderr, process 0): a tqdm bar on a terminal or in a Jupyter notebook, plain lines in a
log file; the ETA; and the run's closing summary (stdout)."""
import contextlib
import math
import sys
import time
import warnings

import jax
from etils import epath


class Progress:
  """Training progress on stderr, process 0 only: a tqdm bar on a terminal or in a Jupyter kernel (a widget
  where ipywidgets is installed, else one line redrawn in place); elsewhere (a log file, a pipe) one plain
  line per logging interval, no carriage returns or padding. The ETA is the sooner of the steps
  left at the rate since the first step finished (`first_step_done`: the compile before it is not a rate)
  and the end of `time_limit_minutes`. `close` prints a summary on stdout."""

  def __init__(self, total: int, initial: int, enabled: bool = True, *, time_limit_minutes: float = 0.0,
               best_metric: str = "", best_mode: str = "max"):
    self.total, self.step, self._initial, self._start_step = total, initial, initial, initial
    self.enabled = enabled and jax.process_index() == 0
    self._start = time.monotonic()
    self._deadline = self._start + 60 * time_limit_minutes if time_limit_minutes > 0 else None
    self._best_metric, self._best_mode = best_metric, best_mode
    self.validations = []  # (step, values)
    self._bar = None
    if self.enabled and (sys.stderr.isatty() or in_notebook()):
      self._bar = _tqdm()(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr,
                          mininterval=0.5, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

  def first_step_done(self):
    """The rate behind the ETA counts from here: the first call's compile (seconds to minutes) is not training
    time, and counted in it made the first ETA many times the run's length."""
    self._start, self._start_step = time.monotonic(), self.step

  @contextlib.contextmanager
  def excluded(self):
    """Leaves the time of the one-time work inside out of the rate (recurring work, such as validation,
    stays in: it recurs until the end)."""
    start = time.monotonic()
    yield
    self._start += time.monotonic() - start

  def update(self, steps: int):
    self.step += steps
    if self._bar is not None:
      self._bar.update(steps)

  def log(self, record: dict):
    """A train record's figures: `loss`, `examples_per_second`, `tokens_per_second` (sequence models)."""
    if not self.enabled:
      return
    shown = {"loss": f"{record['loss']:.4g}", "examples/s": f"{record['examples_per_second']:,.0f}"}
    if "tokens_per_second" in record:
      shown["tokens/s"] = f"{record['tokens_per_second']:,.0f}"
    shown["ETA"] = self._eta()
    if self._bar is not None:
      self._bar.set_postfix(shown, refresh=True)
    else:
      figures = " ".join(f"{k} {v}" for k, v in shown.items())
      print(f"step {self.step}/{self.total} ({100 * self.step / max(self.total, 1):.0f}%) {figures}",
            file=sys.stderr, flush=True)

  def _eta(self) -> str:
    now = time.monotonic()
    done = self.step - self._start_step
    left = (self.total - self.step) * (now - self._start) / done if done > 0 else math.inf
    if self._deadline is not None:
      left = min(left, max(self._deadline - now, 0.0))
    return "?" if math.isinf(left) else time.strftime("%H:%M:%S", time.gmtime(left))

  def validation(self, step: int, epoch: float, values: dict):
    self.validations.append((step, values))
    keys = [k for k in ("loss", "accuracy", "macro_f1", "bits_per_byte") if k in values]
    self.print(f"step {step} (epoch {epoch:.2f}) validation: " + " ".join(f"{k}={values[k]:.4f}" for k in keys))

  def print(self, line: str):
    if jax.process_index() == 0:
      if self._bar is not None:
        self._bar.write(line, file=sys.stdout)
      else:
        print(line, flush=True)

  def end_bar(self):
    """Closes the bar (again: a no-op)."""
    if self._bar is not None:
      self._bar.close()

  def close(self, checkpoints: list[int] | None = None, workdir=None, *, validated: bool = True,
            data_warnings=()):
    """Ends the bar and prints the summary: final and best validation metric with their steps (or, for data
    without a validation split, `validated=False`, that there are none), the checkpoints kept, the data's
    warnings again (labels, dropped rows: said at the start, then buried under progress lines) and the work
    directory's files."""
    self.end_bar()
    trained = self.step > self._initial
    if workdir is None or not (self.validations or (trained and not validated)):
      return
    kept = ', '.join(map(str, checkpoints or [])) or 'none'
    if self.validations:
      metric = self._best_metric if self._best_metric in self.validations[-1][1] else "loss"
      pick = max if self._best_mode == "max" and metric != "loss" else min
      final_step, final = self.validations[-1]
      best_step, best = pick(self.validations, key=lambda sv: sv[1][metric])
      self.print(f"summary: validation {metric} {final[metric]:.4f} at the last step {final_step}, best "
                 f"{best[metric]:.4f} at step {best_step}; checkpoints kept: {kept}")
    else:
      self.print(f"summary: no validation split (every training row trained); the final model is the last "
                 f"step {self.step}; checkpoints kept: {kept}")
    for warning in data_warnings:
      self.print(f"data warning: {warning}")
    files = sorted(p.name + ("/" if p.is_dir() else "") for p in epath.Path(workdir).iterdir()
                   if not p.name.startswith(".") and p.name != "lease.json")  # the lease ends with the run
    self.print(f"work directory {workdir}: {' '.join(files)}")


def in_notebook() -> bool:
  """True in a Jupyter kernel (IPython's kernel app, the test tqdm.auto makes): its stderr is no terminal, but
  its front end redraws a line in place on a carriage return, as a terminal does."""
  ipython = sys.modules.get("IPython")
  shell = ipython.get_ipython() if ipython is not None else None
  return shell is not None and "IPKernelApp" in shell.config


def _tqdm():
  """tqdm.auto's bar class: the notebook widget in a Jupyter kernel with ipywidgets, else the text bar. Without
  ipywidgets tqdm.auto warns once and falls back to the text bar, which a notebook shows as one line redrawn
  in place: the fallback is what this module wants, the warning is noise in the cell."""
  from tqdm import TqdmWarning  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm
