"""trainer/losses.py: per-example losses against their formulas, and metric sums that count only what the
mask marks real, with the confusion matrix indexed [true, predicted]."""
import jax
import numpy as np
import pytest

from flaxforge.core.errors import UserError
from flaxforge.trainer import fields, losses

LOGITS = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 3.0], [1.0, 2.0, 0.0]], np.float32)
LABELS = np.array([0, 2, 2, 0])


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_cross_entropy_and_label_smoothing():
  p = _softmax(LOGITS)
  want = -np.log(p[np.arange(4), LABELS])
  np.testing.assert_allclose(losses.per_example("cross_entropy", LOGITS, LABELS), want, rtol=1e-5)
  one_hot = np.eye(3, dtype=np.float32)[LABELS]
  np.testing.assert_allclose(losses.per_example("cross_entropy", LOGITS, one_hot), want, rtol=1e-5)
  smoothed = one_hot * 0.8 + 0.2 / 3
  np.testing.assert_allclose(losses.per_example("cross_entropy", LOGITS, LABELS, label_smoothing=0.2),
                             -(smoothed * np.log(p)).sum(-1), rtol=1e-5)


def test_mse_is_on_probabilities():
  want = ((_softmax(LOGITS) - np.eye(3)[LABELS]) ** 2).mean(-1)
  np.testing.assert_allclose(losses.per_example("mse", LOGITS, LABELS), want, rtol=1e-5)


def test_unknown_loss_names_the_fix():
  """config.loss's declaration is the one check; each loss it declares has a formula here."""
  with pytest.raises(UserError, match="config.loss = 'hinge' is not one of: cross_entropy, mse; set --config.loss"):
    fields.Run.read({"loss": "hinge"})
  for kind in fields.Run.declared()["loss"].choices:
    assert losses.per_example(kind, LOGITS, LABELS).shape == (4,)


def test_metric_sums_count_only_real_examples():
  mask = np.array([1, 1, 1, 0], np.float32)  # the last row is padding
  sums = jax.device_get(losses.metric_sums("cross_entropy", LOGITS, LABELS, mask, num_classes=3))
  per = -np.log(_softmax(LOGITS)[np.arange(4), LABELS])
  assert float(sums["loss_sum"]) == pytest.approx(per[:3].sum(), rel=1e-5)
  assert float(sums["weight"]) == 3 and float(sums["correct"]) == 2  # predictions 0, 1, 2, (1)
  want = np.zeros((3, 3))
  want[0, 0] = want[2, 1] = want[2, 2] = 1  # [true, predicted]
  np.testing.assert_array_equal(sums["confusion"], want)


def test_a_per_example_mask_covers_every_token():
  logits = np.stack([LOGITS, LOGITS])  # [2 sequences, 4 tokens, 3]
  labels = np.stack([LABELS, LABELS])
  sums = jax.device_get(losses.metric_sums("cross_entropy", logits, labels, np.array([1.0, 0.0], np.float32)))
  assert float(sums["weight"]) == 4 and float(sums["correct"]) == 2
