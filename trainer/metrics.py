"""Metrics from sums (`derive`, `class_report`) and where they go: TensorBoard event files (tensorboardX, no
TensorFlow) and `metrics.jsonl` (the terminal's progress lines: trainer/progress.py).

Only process 0 writes. Values arrive as host floats, already fetched at a logging interval. A run that resumes
from step S trains the steps after S again: the records of those steps written before it stopped are dropped
from metrics.jsonl and purged from TensorBoard, so each step appears once in both.
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
  if "margin_sum" in sums:  # preference pairs (trainer/preference.py): accuracy is the reward accuracy
    out.update({k: float(sums[f"{k}_sum"]) / weight for k in ("chosen_logps", "rejected_logps", "chosen_reward",
                                                                 "rejected_reward")},
               reward_margin=float(sums["margin_sum"]) / weight, reward_accuracy=out["accuracy"])
  elif info.get("task") == "lm":
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


def _summary_writer():
  """tensorboardX's SummaryWriter, imported without PyTorch. tensorboardX 2.6 imports torch, when it is
  installed, only to accept torch tensors as values (flaxforge passes floats); with torch installed that
  import was 1.6 s of every training start against 0.1 s without (BENCHMARKS.md). torch stays importable
  afterwards: the blocking entry is removed again."""
  block = "torch" not in sys.modules  # one already imported costs nothing more
  if block:
    sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX expects
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  finally:
    if block:
      del sys.modules["torch"]
  return SummaryWriter


class MetricWriter:

  def __init__(self, workdir: epath.Path, *, enabled: bool | None = None, tensorboard: bool = True,
               from_step: int | None = None):
    """`tensorboard=False` (a finished run evaluated again): metrics.jsonl only, where its records are marked,
    and no second event file repeating the run's test scalars unmarked. `from_step`: the step the run
    (re)starts from; the records of later steps are dropped (`_drop_after`) and TensorBoard's purged."""
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._jsonl = self._tb = None
    if self.enabled:
      path = workdir / "metrics.jsonl"
      if from_step is not None and path.exists():
        _drop_after(path, from_step)
      if tensorboard:
        SummaryWriter = _summary_writer()  # pylint: disable=invalid-name
        # TensorBoard discards the earlier event files' records from purge_step on (a SessionLog.START).
        self._tb = SummaryWriter(str(workdir / "tensorboard"),
                                 purge_step=from_step + 1 if from_step is not None else None)
      self._jsonl = path.open("a")

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


def _drop_after(path: epath.Path, step: int) -> None:
  """Rewrites metrics.jsonl without the records of steps after `step` (and a line torn by a kill mid-write),
  through a temporary file renamed over it: never half-written."""
  lines = path.read_text().splitlines()
  kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
  if len(kept) == len(lines):
    return
  tmp = path.parent / f".{path.name}.tmp"
  tmp.write_text("".join(line + "\n" for line in kept))
  tmp.replace(path)


def _step_of(line: str) -> int | None:
  try:
    return int(json.loads(line)["step"])
  except (ValueError, KeyError, TypeError):
    return None
