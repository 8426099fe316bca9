"""models/quant.py: round-trip error bounds, the NF4 code, storage size, and gradients that reach an adapter
but not the quantized base."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.stats import norm

from flaxforge.core.errors import UserError
from flaxforge.models import quant, transformer

# QLoRA (Dettmers et al. 2023) appendix E, "NormalFloat 4-bit data type", the 16 values as published.
PUBLISHED_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                 -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                 0.7229568362236023, 1.0]


def test_nf4_code_is_the_published_one_and_its_construction():
  np.testing.assert_array_equal(quant.NF4, np.float32(PUBLISHED_NF4))
  # QLoRA sec. 3 / bitsandbytes create_normal_map: 8 positive and 7 negative quantiles of N(0, 1) between
  # offset = 0.9677083 and 0.5, an exact zero, normalised by the largest.
  offset = 0.9677083
  positive = norm.ppf(np.linspace(offset, 0.5, 9)[:-1])
  negative = -norm.ppf(np.linspace(offset, 0.5, 8)[:-1])
  values = np.sort(np.concatenate([positive, [0.0], negative]))
  np.testing.assert_allclose(quant.NF4, values / values.max(), atol=2e-7)


def test_int8_error_is_at_most_half_a_step_per_channel():
  w = jax.random.normal(jax.random.key(0), (3, 48, 20)) * jnp.linspace(0.01, 3.0, 20)  # channels of many scales
  w = w.at[:, :, 7].set(0.0)  # an all-zero channel
  stored = quant.quantize_int8(w, in_dims=2)
  assert stored["q"].dtype == jnp.int8 and stored["scale"].shape == (20,)
  np.testing.assert_allclose(stored["scale"], np.abs(np.asarray(w)).max(axis=(0, 1)) / 127, rtol=1e-6)
  error = np.abs(np.asarray(quant.dequantize(stored, w.shape)) - np.asarray(w))
  assert np.all(error <= np.asarray(stored["scale"]) / 2 * (1 + 1e-5) + 1e-12)
  assert np.abs(np.asarray(stored["q"])).max() == 127
  assert not np.any(np.asarray(quant.dequantize(stored, w.shape))[..., 7])


@pytest.mark.parametrize("double_quant", [False, True])
def test_nf4_takes_the_nearest_code_per_block(double_quant):
  shape = (37, 29)  # 1073 values: the last block is padded
  w = np.asarray(jax.random.normal(jax.random.key(1), shape)) * 0.02
  stored = quant.quantize_nf4(w, double_quant=double_quant)
  blocks = -(-w.size // 64)
  assert stored["codes"].shape == (blocks, 32) and stored["codes"].dtype == jnp.uint8
  flat = np.pad(w.ravel(), (0, blocks * 64 - w.size)).reshape(blocks, 64)
  absmax = np.abs(flat).max(1)
  nearest = np.abs(flat[..., None] / absmax[:, None, None] - np.float32(PUBLISHED_NF4)).argmin(-1)
  got = np.asarray(quant.dequantize(stored, shape))
  if not double_quant:
    want = (np.float32(PUBLISHED_NF4)[nearest] * absmax[:, None]).ravel()[:w.size].reshape(shape)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    # the worst case: half the widest gap between neighbouring codes, times the block's absmax
    bound = np.max(np.diff(PUBLISHED_NF4)) / 2 * absmax.max()
    assert np.abs(got - w).max() <= bound
  else:  # the block absmaxes come back within half an int8 step of their group's scale
    single = np.asarray(quant.dequantize(quant.quantize_nf4(w), shape))
    step = float(np.max(stored["absmax_scale"]))
    assert np.abs(got - single).max() <= step / 2 * (1 + 1e-5)
    assert stored["absmax_q"].dtype == jnp.int8


@pytest.mark.parametrize("kind, double_quant, per_parameter", [
    ("int8", False, 1 + 4 / 256), ("nf4", False, 0.5625), ("nf4", True, 0.5 + 1 / 64 + 4 / 16384)])
def test_storage_bytes(kind, double_quant, per_parameter):
  shape = (256, 1024)  # 4096 blocks of 64: 16 groups of 256
  kernel = jax.random.normal(jax.random.key(2), shape)
  stored = (quant.quantize_int8(kernel) if kind == "int8" else quant.quantize_nf4(kernel, double_quant=double_quant))
  actual = sum(np.asarray(v).nbytes for v in stored.values())
  assert quant.storage_bytes(shape, kind, double_quant=double_quant) == actual
  assert actual / kernel.size == pytest.approx(per_parameter, abs=4 / kernel.size)


class Adapted(nnx.Module):
  """A quantized base layer plus a LoRA update (as models/lora.py adds one): base(x) + x A B."""

  def __init__(self, layer, kind, *, double_quant=False):
    self.base = quant.QuantizedDense(layer, kind, double_quant=double_quant)
    k = jax.random.split(jax.random.key(3))
    fan_in = int(np.prod(self.base.shape[:self.base.in_dims]))
    fan_out = int(np.prod(self.base.shape[self.base.in_dims:]))
    self.lora_a = nnx.LoRAParam(jax.random.normal(k[0], (fan_in, 4)) * 0.1)
    self.lora_b = nnx.LoRAParam(jax.random.normal(k[1], (4, fan_out)) * 0.1)  # non-zero: A gets a gradient

  def __call__(self, x):
    y = self.base(x)
    n = self.base.in_dims
    delta = x.reshape(*x.shape[:x.ndim - n], -1) @ self.lora_a[...] @ self.lora_b[...]
    return y + delta.reshape(y.shape).astype(y.dtype)


def _layers():
  rngs = nnx.Rngs(0)
  return {
      "linear": nnx.Linear(16, 24, rngs=rngs),
      "qkv": nnx.LinearGeneral(16, (3, 2, 4), kernel_init=transformer.normal(0.5, ("embed", "qkv", "heads", "kv")),
                               rngs=rngs),
      "out": nnx.LinearGeneral((2, 8), 16, axis=(-2, -1), use_bias=False, rngs=rngs),
  }


@pytest.mark.parametrize("name", ["linear", "qkv", "out"])
@pytest.mark.parametrize("kind, double_quant", [("int8", False), ("nf4", False), ("nf4", True)])
def test_jitted_forward_and_gradients_reach_the_adapter_only(name, kind, double_quant):
  layer = _layers()[name]
  float_kernel = np.asarray(layer.kernel[...])
  x = jax.random.normal(jax.random.key(4), (2, 5) + ((2, 8) if name == "out" else (16,)))
  want = layer(x)
  model = Adapted(layer, kind, double_quant=double_quant)
  # the base is not a parameter: LoRA's filters and the optimizer never see it
  assert not jax.tree.leaves(nnx.state(model.base, nnx.Param).filter(lambda p, v: "bias" not in str(p)))
  assert len(jax.tree.leaves(nnx.state(model, quant.QuantizedBase))) >= 2
  base_out = nnx.jit(lambda m, x: m.base(x))(model, x)
  n = model.base.in_dims
  dequantized = np.asarray(model.base.kernel())
  manual = np.tensordot(np.asarray(x), dequantized, n) + (np.asarray(layer.bias[...]) if name != "out" else 0)
  np.testing.assert_allclose(base_out, manual, rtol=1e-5, atol=1e-5)
  tolerance = 0.02 if kind == "int8" else 0.15  # relative to the output's scale
  assert np.abs(np.asarray(base_out) - np.asarray(want)).max() <= tolerance * np.abs(np.asarray(want)).max()
  assert np.abs(dequantized - float_kernel).max() <= (0.5 / 127 if kind == "int8" else 0.2) * np.abs(float_kernel).max()

  graphdef, state = nnx.split(model)
  floats = state.filter(lambda path, v: jnp.issubdtype(v.dtype, jnp.inexact))

  def loss(floats, rest, x):
    m = nnx.merge(graphdef, floats, rest)
    return jnp.sum(jnp.square(m(x)))

  rest = state.filter(lambda path, v: not jnp.issubdtype(v.dtype, jnp.inexact))
  grads, dx = jax.jit(jax.grad(loss, argnums=(0, 2)))(floats, rest, x)
  by_path = {"/".join(map(str, p)): np.asarray(g) for p, g in jax.tree_util.tree_flatten_with_path(
      nnx.to_pure_dict(grads))[0]}
  adapters = [g for p, g in by_path.items() if "lora" in p]
  frozen = [g for p, g in by_path.items() if "base" in p and "bias" not in p]
  assert len(adapters) == 2 and all(np.abs(g).max() > 0 for g in adapters)
  assert frozen and all(not g.any() for g in frozen)  # scales / absmaxes: no gradient
  assert np.abs(np.asarray(dx)).max() > 0  # the input still gets one, for the layers below
  # d/dx of sum(y^2) through the base only equals the float matmul with the dequantized kernel
  base_only = jax.grad(lambda x: jnp.sum(jnp.square(model.base(x))))(x)
  y = np.tensordot(np.asarray(x), dequantized, n) + (np.asarray(layer.bias[...]) if name != "out" else 0)
  want_dx = np.tensordot(2 * y, dequantized, axes=(tuple(range(y.ndim - (dequantized.ndim - n), y.ndim)),
                                                   tuple(range(n, dequantized.ndim))))
  np.testing.assert_allclose(base_only, want_dx, rtol=1e-4, atol=1e-4)


def test_bfloat16_compute():
  layer = nnx.Linear(32, 8, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(5), (4, 32))
  for kind in quant.KINDS:
    dense = quant.QuantizedDense(layer, kind)
    y = dense(x)
    assert y.dtype == jnp.bfloat16
    ref = np.asarray(x) @ np.asarray(dense.kernel()) + np.asarray(layer.bias[...])
    np.testing.assert_allclose(np.asarray(y, np.float32), ref, rtol=0.05, atol=0.05)


def test_errors():
  layer = nnx.Linear(4, 4, rngs=nnx.Rngs(0))
  with pytest.raises(UserError, match="base_quant.*int8, nf4"):
    quant.QuantizedDense(layer, "int4")
  with pytest.raises(UserError, match="dense layers only"):
    quant.QuantizedDense(nnx.Embed(4, 4, rngs=nnx.Rngs(0)), "int8")
