"""models/text_cnn.py: shapes, the seed's parameter count, im2col conv = lax.conv, Keras-style layers."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from flaxforge.models import text_cnn
from flaxforge.core.errors import UserError

SEED_INFO = {"vocab_size": 10000, "num_classes": 20, "seq_len": 100}
ALLOWED_AXES = {None, "batch", "embed", "mlp", "heads", "kv", "vocab", "classes", "length", "norm"}


SMALL_INFO = {"vocab_size": 100, "num_classes": 5, "seq_len": 64}


def build(info=SEED_INFO, **cfg):
  return text_cnn.from_config(cfg, info, rngs=nnx.Rngs(0))


def shapes(info=SEED_INFO, **cfg):  # no compute, no compilation
  return nnx.eval_shape(lambda: build(info, **cfg))


@pytest.fixture(scope="module")
def seed_model():
  return build()


@pytest.fixture(scope="module")
def small_model():
  return build(SMALL_INFO)


forward = nnx.jit(lambda model, x: model(x))


def test_logits_shape_and_dtype(seed_model):
  x = jnp.asarray(np.random.default_rng(0).integers(0, 10000, (3, 100)), jnp.int32)
  y = forward(seed_model, x)
  assert y.shape == (3, 20) and y.dtype == jnp.float32


def test_seed_parameter_count():
  # Embedding 10000*16 = 160000; Conv1D(32, 7) on 16 channels: 7*16*32 + 32 = 3616;
  # Conv1D(64, 7) on 32: 7*32*64 + 64 = 14400; Dense(64) on 64: 64*64 + 64 = 4160; Dense(20): 64*20 + 20 = 1300.
  params = nnx.state(shapes(), nnx.Param)
  assert sum(p.size for p in jax.tree.leaves(params)) == 160000 + 3616 + 14400 + 4160 + 1300


def test_sizes_come_from_config():
  info = {"vocab_size": 50, "num_classes": 3, "seq_len": 40}
  cfg = dict(embed_dim=4, conv1_filters=5, conv1_kernel=3, pool=2, conv2_filters=6, conv2_kernel=4, dense=7)
  model = shapes(info, **cfg)
  assert model.embed.embedding.shape == (50, 4) and model.conv1.kernel.shape == (3, 4, 5)
  assert model.conv2.kernel.shape == (4, 5, 6) and model.out.kernel.shape == (7, 3)
  logits = nnx.eval_shape(lambda: build(info, **cfg)(jnp.zeros((2, 40), jnp.int32)))
  assert logits.shape == (2, 3)


def test_too_short_sequences_are_a_user_error():
  with pytest.raises(UserError, match="at least 55"):  # 7 - 1 + 7 * 7
    shapes({**SEED_INFO, "seq_len": 54})
  shapes({**SEED_INFO, "seq_len": 55})


def test_im2col_conv_equals_lax_conv():
  conv = text_cnn.Conv1D(16, 32, 7, rngs=nnx.Rngs(1))
  conv.bias[...] = jax.random.normal(jax.random.key(2), (32,))
  x = jax.random.normal(jax.random.key(3), (4, 30, 16))
  lax_conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1,), "VALID",
                                                               dimension_numbers=("NWC", "WIO", "NWC")))
  want = lax_conv(x, conv.kernel[...]) + conv.bias[...]
  got = forward(conv, x)
  assert got.shape == (4, 24, 32)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_forward_equals_a_lax_reference(small_model):
  model = small_model
  x = jax.random.randint(jax.random.key(4), (3, 64), 0, 100)

  @jax.jit
  def reference(x):
    return head(conv(pooled(conv(model.embed.embedding[...][x], model.conv1)), model.conv2).max(axis=1))

  def pooled(h):  # MaxPool1D(7), 'valid': 58 positions -> 8 windows
    return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 7, 1), (1, 7, 1), "VALID")

  def head(h):
    h = jax.nn.relu(h @ model.hidden.kernel[...] + model.hidden.bias[...])
    return h @ model.out.kernel[...] + model.out.bias[...]

  def conv(h, layer):
    return jax.nn.relu(jax.lax.conv_general_dilated(h, layer.kernel[...], (1,), "VALID",
                                                    dimension_numbers=("NWC", "WIO", "NWC")) + layer.bias[...])
  np.testing.assert_allclose(forward(model, x), reference(x), rtol=1e-5, atol=1e-5)


def test_keras_initialisers_and_axis_names(seed_model):
  model = seed_model
  emb = np.asarray(model.embed.embedding[...])
  assert emb.min() >= -0.05 and emb.max() <= 0.05 and emb.std() > 0.025  # uniform(-0.05, 0.05)
  limit = np.sqrt(6 / (7 * 16 + 7 * 32))  # glorot_uniform with Keras' fans for a (7, 16, 32) kernel
  kernel = np.asarray(model.conv1.kernel[...])
  assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
  assert not np.any(model.conv1.bias[...])
  names = {path: v.get_metadata().get("out_sharding") for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  assert names[("embed", "embedding")] == ("vocab", "embed") and names[("out", "kernel")] == ("mlp", "classes")
  assert all(n and len(n) == len(nnx.state(model, nnx.Param)[p[0]][p[1]].shape) and set(n) <= ALLOWED_AXES
             for p, n in names.items())


def test_trains_inside_lax_scan():
  model = build(SMALL_INFO)
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
  x = jax.random.randint(jax.random.key(5), (4, 16, 64), 1, 100)
  y = (x[..., -1] > 50).astype(jnp.int32)  # learnable from the tokens

  @nnx.jit
  def train(model, optimizer, x, y):
    def step(carry, batch):
      model, optimizer = carry
      loss_fn = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(batch[0]), batch[1]).mean()
      loss, grads = nnx.value_and_grad(loss_fn)(model)
      optimizer.update(model, grads)
      return (model, optimizer), loss
    _, losses = nnx.scan(step, in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))((model, optimizer), (x, y))
    return losses

  losses = np.concatenate([train(model, optimizer, x, y) for _ in range(3)])
  assert np.isfinite(losses).all() and losses[-4:].mean() < losses[:4].mean()
