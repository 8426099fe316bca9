"""trainer/metrics.py derive: means from sums, bits per byte, and the classification report against
scikit-learn on a confusion matrix whose transpose gives different figures."""
import math

import jax
import numpy as np
import pytest
from sklearn import metrics as sk

from flaxforge.trainer import losses, metrics

# 3 classes with unequal errors: precision (columns) and recall (rows) differ for every class.
TRUE = [0] * 5 + [1] * 4 + [2] * 6
PRED = [0, 0, 0, 1, 2, 1, 1, 0, 0, 2, 2, 2, 2, 1, 0]


def test_class_report_matches_scikit_learn():
  confusion = sk.confusion_matrix(TRUE, PRED).astype(np.float32)
  report = metrics.class_report(confusion)
  precision, recall, f1, _ = sk.precision_recall_fscore_support(TRUE, PRED, zero_division=0)
  np.testing.assert_allclose(report["precision"], precision, rtol=1e-6)
  np.testing.assert_allclose(report["recall"], recall, rtol=1e-6)
  assert report["macro_f1"] == pytest.approx(f1.mean(), rel=1e-6)
  assert report["macro_f1"] == pytest.approx(sk.f1_score(TRUE, PRED, average="macro"), rel=1e-6)
  transposed = metrics.class_report(confusion.T)  # precision and recall swap: the orientation matters
  assert not np.allclose(transposed["precision"], precision)


def test_derive_from_the_step_sums_matches_scikit_learn():
  """End to end from logits: losses.metric_sums' confusion orientation and derive's report agree."""
  logits = np.eye(3, dtype=np.float32)[PRED] * 5
  sums = jax.device_get(losses.metric_sums("cross_entropy", logits, np.array(TRUE), np.ones(len(TRUE), np.float32),
                                           num_classes=3))
  out = metrics.derive(sums, {})
  assert out["accuracy"] == pytest.approx(sk.accuracy_score(TRUE, PRED))
  np.testing.assert_allclose(out["precision"], sk.precision_score(TRUE, PRED, average=None), rtol=1e-6)
  np.testing.assert_allclose(out["recall"], sk.recall_score(TRUE, PRED, average=None), rtol=1e-6)
  assert out["macro_f1"] == pytest.approx(sk.f1_score(TRUE, PRED, average="macro"), rel=1e-6)


def test_a_class_never_predicted_scores_zero_and_an_absent_one_is_left_out_of_macro_f1():
  confusion = np.array([[3, 0, 0], [2, 0, 0], [0, 0, 0]], np.float32)  # class 1 never predicted, 2 absent
  report = metrics.class_report(confusion)
  assert report["precision"] == pytest.approx([0.6, 0.0, 0.0]) and report["recall"] == [1.0, 0.0, 0.0]
  # macro-F1 over the classes that occur (0 and 1), as scikit-learn averages it: (0.75 + 0) / 2
  true, pred = [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]
  assert report["macro_f1"] == pytest.approx(sk.f1_score(true, pred, average="macro"))
  assert report["macro_f1"] == pytest.approx(0.375)


def test_derive_means_and_bits_per_byte():
  out = metrics.derive({"loss_sum": 8.0, "weight": 4.0, "correct": 3.0}, {"task": "lm", "bytes_per_token": 2.0})
  assert out["loss"] == 2.0 and out["accuracy"] == 0.75
  assert out["bits_per_byte"] == pytest.approx(2.0 / math.log(2) / 2.0)
