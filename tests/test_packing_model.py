"""The packing building blocks together on flaxforge's own GPT (learned positions): packed rows with the
segment mask and per-example positions give the loss and gradients of the same examples run one per row.
(A rope model needs positions [B, T] in transformer.rope first; see the integration notes.)"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from flaxforge.data import packing
from flaxforge.models import gpt, segments, transformer

SEQ_LEN, VOCAB = 32, 64


def _loss(logits, labels, mask):
  """The mean per-token cross-entropy over the mask (the loss normalised per token)."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return jnp.sum(ce * mask) / jnp.sum(mask)


@pytest.mark.slow  # gradients of a GPT and a Llama, packed and unpacked
def test_packed_rows_give_the_unpacked_loss_and_gradients():
  arch = transformer.arch_from_config({"size": "tiny", "position": "learned", "max_len": SEQ_LEN},
                                      {"vocab_size": VOCAB, "seq_len": SEQ_LEN})
  model = gpt.GPT(arch, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  lengths = [7, 12, 4, 9, 15, 20, 3]
  examples = [packing.next_token(rng.integers(1, VOCAB, n + 1), rng.integers(0, 2, n + 1)) for n in lengths]
  for e in examples:
    e["loss_mask"][-1] = 1.0  # every example has a loss token

  unpacked = {k: np.zeros((len(examples), SEQ_LEN), v.dtype) for k, v in examples[0].items()}
  for i, e in enumerate(examples):
    for k, v in e.items():
      unpacked[k][i, :len(v)] = v
  packer = packing.Packer([len(e["inputs"]) for e in examples], SEQ_LEN, shuffle=False, repeat=False)
  rows = packer.next_rows(100)
  packed = packing.pack(examples, rows, SEQ_LEN)
  assert len(rows) < len(examples)  # several examples share rows

  def unpacked_loss(model):
    return _loss(model(jnp.asarray(unpacked["inputs"])), jnp.asarray(unpacked["label"]),
                 jnp.asarray(unpacked["loss_mask"]))

  def packed_loss(model):
    mask = segments.attention_mask(jnp.asarray(packed["segment_ids"]))
    h, _ = model.transformer(jnp.asarray(packed["inputs"]), jnp.asarray(packed["positions"]), mask=mask)
    logits = model._logits(h)  # pylint: disable=protected-access
    return _loss(logits, jnp.asarray(packed["label"]), jnp.asarray(packed["loss_mask"]))

  want, want_grads = nnx.value_and_grad(unpacked_loss)(model)
  got, got_grads = nnx.value_and_grad(packed_loss)(model)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  leaves = jax.tree.leaves(nnx.to_pure_dict(want_grads))
  for w, g in zip(leaves, jax.tree.leaves(nnx.to_pure_dict(got_grads))):
    scale = np.abs(np.asarray(w)).max()
    assert np.abs(np.asarray(g) - np.asarray(w)).max() <= 1e-5 * scale + 1e-9
  assert sum(np.abs(np.asarray(w)).max() > 0 for w in leaves) > len(leaves) // 2
