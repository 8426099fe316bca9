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
  """Macro-F1 and per-class precision and recall from a confusion matrix [true, predicted]."""
  tp = np.diag(confusion)
  precision = np.divide(tp, confusion.sum(0), out=np.zeros_like(tp), where=confusion.sum(0) > 0)
  recall = np.divide(tp, confusion.sum(1), out=np.zeros_like(tp), where=confusion.sum(1) > 0)
  f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp),
                 where=(precision + recall) > 0)
  return {"macro_f1": float(f1.mean()), "precision": precision.tolist(), "recall": recall.tolist(),
          "confusion": confusion.tolist()}


class MetricWriter:

  def __init__(self, workdir: epath.Path, *, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._jsonl = self._tb = None
    if self.enabled:
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
    for name, value in scalars.items():
      self._tb.add_scalar(f"{split}/{name}", value, step)

  def write_text(self, step: int, tag: str, text: str):
    if self.enabled:
      self._tb.add_text(tag, text, step)

  def flush(self):
    if self.enabled:
      self._tb.flush()

  def close(self):
    if self.enabled:
      self._tb.close()
      self._jsonl.close()


class Progress:
  """A terminal progress bar over training steps with examples/s and ETA (process 0, stderr)."""

  def __init__(self, total: int, initial: int, enabled: bool = True):
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr,
                     disable=not (enabled and jax.process_index() == 0), mininterval=0.5)

  def update(self, steps: int, **postfix):
    if postfix:
      self._bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in postfix.items()},
                            refresh=False)
    self._bar.update(steps)

  def print(self, line: str):
    if jax.process_index() == 0:
      self._bar.write(line, file=sys.stdout)

  def close(self):
    self._bar.close()
