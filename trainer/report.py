"""An evaluation report for classifiers: JSON figures and the confusion matrix as a PNG image, named after
the split and the step (`test_step40.json`, `test_step40_confusion.png`) so evaluations of other steps
sit beside each other. The PNG is trainer/plots.py's figure, the one a notebook shows."""
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
  from flaxforge.trainer import plots  # pylint: disable=g-import-not-at-top  (matplotlib: a second, on use)
  with paths[1].open("wb") as f:
    plots.confusion_matrix(figures).savefig(f, format="png", dpi=110)
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
