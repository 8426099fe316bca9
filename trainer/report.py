"""An evaluation report for classifiers: JSON figures and the confusion matrix as a PNG image, named after
the split and the step (`test_step40.json`, `test_step40_confusion.png`) so evaluations of other steps
sit beside each other."""
import json

import numpy as np
from etils import epath


def write(directory: epath.Path, split: str, step: int, results: dict, label_names=None) -> list[epath.Path]:
  """Writes the two files into `directory` (created if missing) and returns their paths; OSError if it
  cannot be written."""
  directory = epath.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  stem = f"{split}_step{step}"
  confusion = np.asarray(results["confusion"])
  names = list(label_names or range(len(confusion)))
  per_class = {str(n): {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": int(s)}
               for n, p, r, s in zip(names, results["precision"], results["recall"], confusion.sum(1))}
  figures = {"split": split, "step": step, "accuracy": results["accuracy"], "macro_f1": results["macro_f1"],
             "loss": results["loss"], "per_class": per_class, "confusion": confusion.astype(int).tolist(),
             "labels": [str(n) for n in names]}
  paths = [directory / f"{stem}.json", directory / f"{stem}_confusion.png"]
  paths[0].write_text(json.dumps(figures, indent=2, ensure_ascii=False), encoding="utf-8")  # 体育, not \u4f53\u80b2
  _plot(confusion, names, paths[1], f"{split} at step {step}: "
        f"accuracy {results['accuracy']:.3f}, macro-F1 {results['macro_f1']:.3f}")
  return paths


def table(results: dict, label_names=None) -> str:
  """The per-class table (precision, recall, F1, support; accuracy and the macro and weighted averages) of
  `results["confusion"]` [true, predicted], as scikit-learn's `classification_report` prints it (3 digits; a
  class never predicted has precision 0). Its rows are the classes that occur as true labels or predictions,
  so its macro average is the run's macro-F1 (trainer/metrics.py class_report)."""
  from sklearn import metrics  # pylint: disable=g-import-not-at-top  (eval alone needs it)
  confusion = np.asarray(results["confusion"]).astype(np.int64)
  names = [str(n) for n in (label_names or range(len(confusion)))]
  true, predicted = np.nonzero(confusion)  # each cell's (true, predicted) pair, repeated by its count
  counts = confusion[true, predicted]
  occurring = np.union1d(true, predicted)
  return metrics.classification_report(np.repeat(true, counts), np.repeat(predicted, counts), labels=occurring,
                                       target_names=[names[i] for i in occurring], digits=3, zero_division=0)


def _plot(confusion: np.ndarray, names, path: epath.Path, title: str):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  n = len(names)
  fig, ax = plt.subplots(figsize=(max(5, 0.45 * n + 2), max(4, 0.45 * n + 1.5)))
  rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
  ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
  ax.set_xticks(range(n), [str(x) for x in names], rotation=90, fontsize=7)
  ax.set_yticks(range(n), [str(x) for x in names], fontsize=7)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title, fontsize=9)
  if n <= 25:
    for i in range(n):
      for j in range(n):
        if confusion[i, j]:
          ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=6,
                  color="white" if rates[i, j] > 0.5 else "black")
  fig.tight_layout()
  with path.open("wb") as f:
    fig.savefig(f, format="png", dpi=110)
  plt.close(fig)
