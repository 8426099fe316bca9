"""Where metrics go: TensorBoard event files (tensorboardX, no TensorFlow), `metrics.jsonl`, the terminal.

Only process 0 writes. Values arrive as host floats, already fetched at a logging interval.
"""
import json
import math
import sys
import time

import jax
import numpy as np
from etils import epath


def derive(sums: dict, info: dict) -> dict:
  """Means and rates from metric sums (see trainer.losses.metric_sums and trainer.steps)."""
  weight = max(float(sums["weight"]), 1.0)
  out = {"loss": float(sums["loss_sum"]) / weight, "accuracy": float(sums["correct"]) / weight}
  if info.get("task") == "regression":  # no classes: accuracy means nothing, the error's scale does
    del out["accuracy"]
    out["rmse"] = math.sqrt(out["loss"])
  if info.get("task") == "lm":
    out["bits_per_byte"] = out["loss"] / math.log(2) / info.get("bytes_per_token", 1.0)
  if "confusion" in sums:
    out.update(class_report(np.asarray(sums["confusion"])))
  return out


def class_report(confusion: np.ndarray) -> dict:
  """Macro-F1 and per-class precision and recall from a confusion matrix [true, predicted]. Macro-F1 is the
  mean over the classes that occur, as true labels or as predictions (scikit-learn's f1_score with
  average="macro"): a class absent from both is left out rather than counted as 0."""
  confusion = np.asarray(confusion, np.float64)
  tp = np.diag(confusion)
  precision = np.divide(tp, confusion.sum(0), out=np.zeros_like(tp), where=confusion.sum(0) > 0)
  recall = np.divide(tp, confusion.sum(1), out=np.zeros_like(tp), where=confusion.sum(1) > 0)
  f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                 where=(precision + recall) > 0)
  occurs = (confusion.sum(0) + confusion.sum(1)) > 0
  macro_f1 = float(f1[occurs].mean()) if occurs.any() else 0.0
  return {"macro_f1": macro_f1, "precision": precision.tolist(), "recall": recall.tolist(),
          "confusion": confusion.tolist()}


class MetricWriter:

  def __init__(self, workdir: epath.Path, *, enabled: bool | None = None, tensorboard: bool = True):
    """`tensorboard=False` (a finished run evaluated again): metrics.jsonl only, where its records are marked,
    and no second event file repeating the run's test scalars unmarked."""
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._jsonl = self._tb = None
    if self.enabled:
      if tensorboard:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        self._tb = SummaryWriter(str(workdir / "tensorboard"))
      self._jsonl = (workdir / "metrics.jsonl").open("a")

  def write(self, step: int, split: str, values: dict):
    """One JSONL record {step, split, time, **values}; scalars also to TensorBoard as `split/name`."""
    if not self.enabled:
      return
    scalars = {k: v for k, v in values.items() if isinstance(v, (int, float))}
    record = {"step": int(step), "split": split, "time": round(time.time(), 3), **values}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    for name, value in scalars.items() if self._tb is not None else ():
      self._tb.add_scalar(f"{split}/{name}", value, step)

  def write_text(self, step: int, tag: str, text: str):
    if self._tb is not None:
      self._tb.add_text(tag, text, step)

  def flush(self):
    if self._tb is not None:
      self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()
    if self._jsonl is not None:
      self._jsonl.close()


class Progress:
  """Training progress on stderr, process 0 only: a tqdm bar on a terminal; elsewhere (a log file, a pipe)
  one plain line per logging interval, no carriage returns or padding. The ETA is the sooner of the steps
  left at the interval's rate and the end of `time_limit_minutes`. `close` prints a summary on stdout."""

  def __init__(self, total: int, initial: int, enabled: bool = True, *, time_limit_minutes: float = 0.0,
               best_metric: str = "", best_mode: str = "max"):
    self.total, self.step, self._start_step = total, initial, initial
    self.enabled = enabled and jax.process_index() == 0
    self._start = time.monotonic()
    self._deadline = self._start + 60 * time_limit_minutes if time_limit_minutes > 0 else None
    self._best_metric, self._best_mode = best_metric, best_mode
    self.validations = []  # (step, values)
    self._bar = None
    if self.enabled and sys.stderr.isatty():
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr,
                       mininterval=0.5, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

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

  def close(self, checkpoints: list[int] | None = None, workdir=None, *, validated: bool = True):
    """Ends the bar and prints the summary: final and best validation metric with their steps (or, for data
    without a validation split, `validated=False`, that there are none), the checkpoints kept and the work
    directory's files."""
    if self._bar is not None:
      self._bar.close()
    trained = self.step > self._start_step
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
    files = sorted(p.name + ("/" if p.is_dir() else "") for p in epath.Path(workdir).iterdir()
                   if not p.name.startswith(".") and p.name != "lease.json")  # the lease ends with the run
    self.print(f"work directory {workdir}: {' '.join(files)}")
