"""Packed training rows (data/packing.py `Batches`, the feed's packed path) through the train step's objective
(trainer/steps.py) on pretrained GPT-2 and Llama models: the same loss and gradients, normalised per token,
as the same examples one per padded row."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import tiny_hf
from flaxforge.data import chat_sft, packing
from flaxforge.models import hf
from flaxforge.trainer import steps

SEQ_LEN = 32
TEXTS = ["the cat sat on the mat", "a dog ran in the park", "rockets fly to the moon"] * 10


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request, tmp_path_factory):
  save = tiny_hf.save_gpt2 if request.param == "gpt2" else tiny_hf.save_llama
  return hf.load(save(tmp_path_factory.mktemp(request.param), TEXTS))


def _examples(vocab: int, count: int = 9):
  """Padded next-token rows of random lengths (some prompt tokens without loss), [count, SEQ_LEN]."""
  rng = np.random.default_rng(0)
  rows = []
  for n in rng.integers(4, SEQ_LEN, count):
    mask = (np.arange(n + 1) > rng.integers(0, n // 2)).astype(np.float32)
    rows.append(chat_sft.padded(rng.integers(3, vocab, n + 1), mask, SEQ_LEN, 0))
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def _loss_and_grads(model, batch):
  sums_of = steps.objective("cross_entropy", {})

  def loss(m):
    sums = sums_of(m, batch)
    return sums["loss_sum"] / sums["weight"]
  value, grads = nnx.value_and_grad(loss)(model)
  return float(value), [np.asarray(g) for g in jax.tree.leaves(nnx.to_pure_dict(grads))]


def test_packed_rows_train_like_unpacked_ones(model):
  arrays = _examples(model.arch.vocab_size)
  rows = packing.rows_per_epoch(arrays, SEQ_LEN, seed=0, window=100)
  assert rows < len(arrays["inputs"])  # examples share rows
  packed = next(packing.Batches(arrays, SEQ_LEN, rows, seed=0, window=100))  # one epoch: every example once
  assert {"segment_ids", "positions", "mask"} <= set(packed) and packed["segment_ids"].max() > 1
  unpacked = {"inputs": arrays["inputs"], "label": arrays["label"], "mask": arrays["loss_mask"]}
  assert packed["mask"].sum() == unpacked["mask"].sum()

  want, want_grads = _loss_and_grads(model, jax.tree.map(jnp.asarray, unpacked))
  got, got_grads = _loss_and_grads(model, jax.tree.map(jnp.asarray, packed))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  for w, g in zip(want_grads, got_grads):
    assert np.abs(g - w).max() <= 1e-5 * np.abs(w).max() + 1e-9
  assert sum(np.abs(w).max() > 0 for w in want_grads) > len(want_grads) // 2


def test_packed_batches_resume_from_their_state():
  arrays = _examples(50, count=40)
  first = packing.Batches(arrays, SEQ_LEN, 4, seed=3, window=16)
  for _ in range(5):
    next(first)
  state = first.get_state()
  want = [next(first) for _ in range(6)]
  again = packing.Batches(arrays, SEQ_LEN, 4, seed=3, window=16)
  again.set_state(state)
  for w in want:
    got = next(again)
    for k in w:
      np.testing.assert_array_equal(got[k], w[k])


def test_each_process_builds_its_own_rows_of_the_global_batch():
  arrays = _examples(50, count=40)
  whole = next(packing.Batches(arrays, SEQ_LEN, 4, seed=1, window=16))
  halves = [next(packing.Batches(arrays, SEQ_LEN, 4, seed=1, window=16, process_index=i, process_count=2))
            for i in range(2)]
  for k in whole:
    np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), whole[k])
