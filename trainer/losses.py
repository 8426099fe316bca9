"""Losses and their metrics as sums over the examples (or tokens) a mask marks real.

Returning sums, not means, makes gradient accumulation, padded eval batches and multi-device reductions
exact: the caller divides by the total weight once.
"""
import jax
import jax.numpy as jnp
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


def metric_sums(kind: str, logits, labels, mask, *, num_classes: int = 0, label_smoothing: float = 0.0):
  """Summed loss, weight, correct predictions and (when num_classes > 0) the confusion matrix.

  `logits` [..., C]; `labels` [...] integer or [..., C] one-hot; `mask` [...] 1 for real examples.
  """
  logits = logits.astype(jnp.float32)
  loss = per_example(kind, logits, labels, label_smoothing)
  true = labels if labels.ndim < logits.ndim else jnp.argmax(labels, -1)
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
