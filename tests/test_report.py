"""trainer/report.py: the eval report's JSON holds the derived figures per class name, the confusion matrix
[true, predicted] with supports from its rows, and a PNG beside it."""
import json

import numpy as np
import pytest
from etils import epath

from flaxforge.trainer import metrics, report


def test_report_json_and_png(tmp_path):
  confusion = np.array([[4, 1], [3, 2]], np.float32)
  results = {"accuracy": 0.6, "loss": 0.9, **metrics.class_report(confusion)}
  written = report.write(epath.Path(tmp_path), "test", 7, results, label_names=["cat", "dog"])
  assert [p.name for p in written] == ["test_step7.json", "test_step7_confusion.png"]  # the step in the name
  figures = json.loads((tmp_path / "test_step7.json").read_text())
  assert figures["step"] == 7 and figures["labels"] == ["cat", "dog"]
  assert figures["confusion"] == [[4, 1], [3, 2]]
  want = {"cat": {"precision": 4 / 7, "recall": 0.8, "f1": 2 / 3, "support": 5},
          "dog": {"precision": 2 / 3, "recall": 0.4, "f1": 0.5, "support": 5}}
  assert figures["per_class"].keys() == want.keys()
  for name, row in want.items():
    assert figures["per_class"][name] == pytest.approx(row, rel=1e-6), name
  assert figures["macro_f1"] == results["macro_f1"]
  assert (tmp_path / "test_step7_confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_per_class_table_is_scikit_learns_classification_report():
  """Issue 27, item 12: eval prints the table a user wants to read, not only accuracy and macro-F1."""
  from sklearn.metrics import classification_report, confusion_matrix  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  y_true = rng.choice(4, 200, p=[0.5, 0.3, 0.15, 0.05])
  y_pred = np.where(rng.random(200) < 0.7, y_true, rng.choice(4, 200))
  y_pred[y_pred == 3] = 2  # class 3 is never predicted: its precision is 0, not a warning
  names = ["billing", "shipping", "returns", "other", "Billing"]  # "Billing" occurs nowhere in the test split
  results = metrics.class_report(confusion_matrix(y_true, y_pred, labels=range(5)))
  table = report.table(results, names)
  assert table == classification_report(y_true, y_pred, target_names=names[:4], digits=3, zero_division=0)
  macro_f1 = float(table.split("macro avg")[1].split()[2])
  assert macro_f1 == pytest.approx(results["macro_f1"], abs=5e-4)  # the table's macro average is the run's
