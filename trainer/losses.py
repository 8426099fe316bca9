"""Losses and their metrics as sums over the examples (or tokens) a mask marks real.

Returning sums, not means, makes gradient accumulation, padded eval batches and multi-device reductions
exact: the caller divides by the total weight once.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from flaxforge.core.errors import UserError

def _dense(labels, logits):
  """Integer labels as one-hot targets; labels that are already one-hot pass through."""
  if labels.ndim == logits.ndim:
    return labels.astype(jnp.float32)
  return jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)


def _cross_entropy(logits, targets, label_smoothing):
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def _mse(logits, targets, label_smoothing):
  del label_smoothing
  return jnp.mean(jnp.square(jax.nn.softmax(logits) - targets), axis=-1)  # on probabilities, as Keras's


_CLASSIFICATION = {"cross_entropy": _cross_entropy, "mse": _mse}  # config.loss's declared choices


def per_example(kind: str, logits, labels, label_smoothing: float = 0.0):
  """The loss of each example (or token): `kind` is `config.loss`."""
  if labels.ndim < logits.ndim and jnp.issubdtype(labels.dtype, jnp.floating):  # regression targets [...]
    if kind != "mse":
      raise UserError("a regression target (data.task=regression) needs the squared error: --config.loss=mse")
    return jnp.square(logits[..., 0] - labels)
  return _CLASSIFICATION[kind](logits, _dense(labels, logits), label_smoothing)


def class_weights(kind: str, labels, num_classes: int) -> np.ndarray | None:
  """The loss weight of each class (float32 [num_classes]) for `train.class_weight` = `kind`, from the training
  split's class ids `labels` [N]: None for "none"; for "balanced" scikit-learn's `compute_class_weight`,
  n_samples / (n_classes * count of the class), n_classes counting the classes present (a class with no
  training row gets 0: no example carries it). The weights average 1 over the training rows."""
  if kind == "none":
    return None
  counts = np.bincount(np.asarray(labels, np.int64).ravel(), minlength=num_classes)
  present = np.count_nonzero(counts)
  return np.where(counts > 0, counts.sum() / (present * np.maximum(counts, 1)), 0.0).astype(np.float32)


def metric_sums(kind: str, logits, labels, mask, *, num_classes: int = 0, label_smoothing: float = 0.0,
                class_weights=None):
  """Summed loss, weight, correct predictions and (when num_classes > 0) the confusion matrix.

  `logits` [..., C]; `labels` [...] integer or [..., C] one-hot; `mask` [...] 1 for real examples;
  `class_weights` [C] (the `class_weights` function's) multiplies each example's loss by its true class's
  weight. The weight stays the count of real examples, so the mean is over examples, as Keras' `class_weight`
  averages.
  """
  logits = logits.astype(jnp.float32)
  loss = per_example(kind, logits, labels, label_smoothing)
  true = labels if labels.ndim < logits.ndim else jnp.argmax(labels, -1)
  if class_weights is not None:
    if true.ndim != loss.ndim or not jnp.issubdtype(true.dtype, jnp.integer):
      raise UserError("train.class_weight weights the classes of a classifier; this run's targets are not class "
                      "ids (regression?): set --config.train.class_weight=none")
    loss = loss * jnp.asarray(class_weights, jnp.float32)[true]
  # A per-example mask covers every token of a sequence-labelling example (language models).
  mask = jnp.broadcast_to(mask.reshape(mask.shape + (1,) * (true.ndim - mask.ndim)), true.shape).astype(jnp.float32)
  pred = jnp.argmax(logits, -1)
  sums = {
      "loss_sum": jnp.sum(loss * mask),
      "weight": jnp.sum(mask),
      "correct": jnp.sum((pred == true) * mask),
  }
  if num_classes:
    sums["confusion"] = jnp.zeros((num_classes, num_classes), jnp.float32).at[true.ravel(), pred.ravel()].add(
        mask.ravel())
  return sums
