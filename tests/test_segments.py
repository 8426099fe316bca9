"""models/segments.py: packed examples never attend to each other."""
import jax
import jax.numpy as jnp
import numpy as np

from flaxforge.models import attention, segments

# Two rows: [example 1 (3 tokens), example 2 (4 tokens), padding (1)] and [example 1 (6), padding (2)].
SEGMENTS = np.array([[1, 1, 1, 2, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1, 0, 0]], np.int32)


def test_mask_is_block_diagonal_and_causal():
  mask = np.asarray(segments.attention_mask(jnp.asarray(SEGMENTS)))
  assert mask.shape == (2, 1, 8, 8)
  for b in range(2):
    for t in range(8):
      for s in range(8):
        same = SEGMENTS[b, t] == SEGMENTS[b, s]
        assert mask[b, 0, t, s] == (same and s <= t), (b, t, s)
  assert not mask[0, 0, 3:7, 0:3].any()  # the second example sees nothing of the first
  assert mask[0, 0, 7, 7]  # padding sees itself, so its softmax has a key
  full = np.asarray(segments.attention_mask(jnp.asarray(SEGMENTS), causal=False))
  assert full[0, 0, 3, 6] and not full[0, 0, 3, 2]


def test_an_example_cannot_attend_to_the_previous_one():
  """Changing the first example's keys and values leaves the second example's attention output unchanged,
  in jax.nn.dot_product_attention and in the CPU per-head path; without the mask it changes."""
  b, t, n, h = SEGMENTS.shape[0], SEGMENTS.shape[1], 2, 4
  q, k, v = (jax.random.normal(key, (b, t, n, h)) for key in jax.random.split(jax.random.key(0), 3))
  first = jnp.asarray(SEGMENTS == 1)[:, :, None, None]
  k2 = jnp.where(first, k + 3.0, k)
  v2 = jnp.where(first, -v, v)
  mask = segments.attention_mask(jnp.asarray(SEGMENTS))
  for attend in (lambda *a, **kw: jax.nn.dot_product_attention(*a, **kw), attention.attention_per_head):
    before, after = attend(q, k, v, mask=mask), attend(q, k2, v2, mask=mask)
    np.testing.assert_allclose(after[0, 3:7], before[0, 3:7], rtol=1e-6, atol=1e-6)
    assert np.isfinite(np.asarray(after)).all()
    causal_only = attend(q, k2, v2, is_causal=True)
    assert np.abs(np.asarray(causal_only[0, 3:7] - before[0, 3:7])).max() > 1e-2
