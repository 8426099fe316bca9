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
  want = {"cat": {"precision": 4 / 7, "recall": 0.8, "support": 5}, "dog": {"precision": 2 / 3, "recall": 0.4, "support": 5}}
  assert figures["per_class"].keys() == want.keys()
  for name, row in want.items():
    assert figures["per_class"][name] == pytest.approx(row, rel=1e-6), name
  assert figures["macro_f1"] == results["macro_f1"]
  assert (tmp_path / "test_step7_confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
