"""Figures of a run: its training curves (from `metrics.jsonl`) and an evaluation's confusion matrix (from the
report `eval` writes, trainer/report.py, which saves this same figure as its PNG).

Each is a matplotlib `Figure` built without pyplot: no backend is chosen or changed (a notebook's inline one
included) and nothing waits to be closed. A notebook shows one inline when a cell ends with it (it renders
itself as PNG); `fig.savefig(path)` writes it to a file.
"""
import io
import json
import math
import os

import numpy as np
from matplotlib import figure as mpl_figure

from flaxforge.core.errors import UserError

# A validation record's figures drawn beside the loss, by task: classifiers, language models, regression.
_QUALITY = ("accuracy", "macro_f1", "bits_per_byte", "rmse")


class Figure(mpl_figure.Figure):
  """A matplotlib Figure that IPython shows as PNG (`_repr_png_`), as the inline backend shows pyplot's."""

  def _repr_png_(self) -> bytes:
    buffer = io.BytesIO()
    self.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def training_curves(workdir: str | os.PathLike) -> Figure:
  """The run's loss by step, training (each logging interval's mean) and validation, and beside it the
  validation accuracy and macro-F1 (classifiers), bits per byte (language models) or RMSE (regression).

  Reads `<workdir>/metrics.jsonl`; where a resumed run wrote a step twice, its newer record is drawn. Raises
  UserError when the work directory has no training record yet.
  """
  path = os.path.join(os.fspath(workdir), "metrics.jsonl")
  train, validation = _records(path, "train"), _records(path, "validation")
  if not train and not validation:
    raise UserError(f"no training records in {path}: train a run in {os.fspath(workdir)} first "
                    "(flaxforge.train)")
  quality = [k for k in _QUALITY if any(k in r for r in validation)]
  fig = Figure(figsize=(10 if quality else 5.5, 3.8))
  axes = fig.subplots(1, 2 if quality else 1, squeeze=False)[0]
  loss = axes[0]
  if train:
    loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="training", color="tab:blue")
  if validation:
    loss.plot([r["step"] for r in validation], [r["loss"] for r in validation], "o-", label="validation",
              color="tab:orange", markersize=3)
  loss.set(xlabel="step", ylabel="loss", title="loss")
  loss.legend()
  if quality:
    for key in quality:
      points = [(r["step"], r[key]) for r in validation if key in r]
      axes[1].plot(*zip(*points), "o-", label=key, markersize=3)
    axes[1].set(xlabel="step", title="validation")
    if set(quality) <= {"accuracy", "macro_f1"}:
      axes[1].set_ylim(0, 1.02)  # fractions on their whole scale: a flat 0.9167 is not drawn as a cliff
    axes[1].legend()
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.suptitle(os.path.basename(os.path.normpath(os.fspath(workdir))), fontsize=10)
  fig.tight_layout()
  return fig


def confusion_matrix(report: dict | str | os.PathLike) -> Figure:
  """An evaluation's confusion matrix: rows the true labels, columns the predicted ones, each cell shaded by
  its share of its row (the class's recall when on the diagonal) and, up to 25 classes, labelled with its
  count.

  report: a report JSON's path (`flaxforge.evaluate(...)["report"][0]`) or the dict it holds: "confusion"
    (counts [classes, classes], [true, predicted]) and "labels" (class names); its "split", "step",
    "accuracy" and "macro_f1", where present, make the title.
  """
  if not isinstance(report, dict):
    with open(report) as f:
      report = json.load(f)
  confusion = np.asarray(report["confusion"], np.float64)
  names = [str(n) for n in report["labels"]]
  n = len(names)
  fig = Figure(figsize=(max(5, 0.45 * n + 2), max(4, 0.45 * n + 1.5)))
  ax = fig.subplots()
  rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
  ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
  ax.set_xticks(range(n), names, rotation=90, fontsize=7)
  ax.set_yticks(range(n), names, fontsize=7)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(_title(report), fontsize=9)
  if n <= 25:
    for i in range(n):
      for j in range(n):
        if confusion[i, j]:
          ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=6,
                  color="white" if rates[i, j] > 0.5 else "black")
  fig.tight_layout()
  return fig


def _title(report: dict) -> str:
  """'test at step 40: accuracy 0.900, macro-F1 0.897', from whichever of those the report has."""
  where = f"{report.get('split', 'evaluation')}" + (f" at step {report['step']}" if "step" in report else "")
  scores = ", ".join(f"{name} {report[k]:.3f}" for k, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))
                     if isinstance(report.get(k), (int, float)) and math.isfinite(report[k]))
  return f"{where}: {scores}" if scores else where


def _records(path: str, split: str) -> list[dict]:
  """The records of `split` in step order, the newest of each step (a line a crash cut short is left out)."""
  by_step = {}
  try:
    with open(path) as f:
      for line in f:
        try:
          record = json.loads(line)
        except json.JSONDecodeError:
          continue
        if record.get("split") == split and "loss" in record:
          by_step[record["step"]] = record
  except FileNotFoundError:
    return []
  return [by_step[s] for s in sorted(by_step)]
