"""A quantized frozen base for LoRA (QLoRA): a dense layer's kernel stored in 8 or 4 bits, dequantized inside
the matmul in the layer's compute dtype.

Storage (bytes per parameter, against 2 for bfloat16 and 4 for float32; K is the kernel's fan-in):
- "int8": per-output-channel absmax (LLM.int8's vector-wise quantization without its outliers, Dettmers
  et al. 2022): q = round(w / s) in [-127, 127], s = max_k |w[k, m]| / 127 per output m (float32).
  1 + 4/K bytes (1.001 at K = 4096); |w - q s| <= s / 2.
- "nf4": 4-bit NormalFloat (QLoRA, Dettmers et al. 2023, sec. 3): the flattened kernel in blocks of 64,
  each scaled by its absmax (float32) and rounded to the nearest of the 16 NF4 values (`NF4`); two codes
  per byte. 0.5 + 4/64 = 0.5625 bytes. With double quantization (sec. 3, "Double Quantization") the block
  absmaxes, less their mean, are stored as int8 with one float32 scale per 256 of them: 0.5 + 1/64 +
  4/16384 = 0.516 bytes. (bitsandbytes stores those absmaxes in its dynamic 8-bit float code rather than
  linear int8; the memory is the same.)

`QuantizedDense` replaces an `nnx.Linear` / `nnx.LinearGeneral`: it keeps the bias (an nnx.Param) and
holds the quantized kernel in `QuantizedBase` variables, which are not nnx.Param, so LoRA's `trainable`
filter, the optimizer and `nnx.grad` over parameters never see them; the dequantized kernel is also
behind stop_gradient, so even a gradient over every variable leaves it alone, while gradients flow through
the matmul to the layer's input (and so to adapters upstream). For int8 the per-channel scale commutes with
the contraction, so the matmul reads the int8 kernel converted to the compute dtype and the scale
multiplies its output; for NF4 the kernel is decoded (table lookup, times the block absmax) in float32,
cast to the compute dtype and multiplied. Under jit XLA fuses the decoding into one transient kernel-sized
buffer per layer; what stays resident is the quantized storage.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flaxforge.core.errors import UserError
from flaxforge.models import matmul

KINDS = ("int8", "nf4")
NF4_BLOCK, ABSMAX_BLOCK = 64, 256
# The 16 NF4 values: QLoRA (Dettmers et al. 2023) appendix E, as bitsandbytes ships them (functional.py,
# get_4bit_type("nf4")): quantiles of N(0, 1) normalised to [-1, 1], with an exact 0.
NF4 = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023,
    1.0], np.float32)


class QuantizedBase(nnx.Variable):
  """Frozen storage of a quantized kernel (codes, scales): no optimizer state, no gradient."""


def quantize_int8(kernel, in_dims: int = 1) -> dict:
  """kernel [*in, *out] (its first `in_dims` axes contracted) -> {"q": int8 [*in, *out], "scale": float32
  [*out]}: per-output-channel absmax; an all-zero channel gets scale 0."""
  w = jnp.asarray(kernel, jnp.float32)
  scale = jnp.max(jnp.abs(w), axis=tuple(range(in_dims))) / 127.0
  q = jnp.round(w / jnp.where(scale == 0, 1.0, scale))
  return {"q": jnp.clip(q, -127, 127).astype(jnp.int8), "scale": scale}


def quantize_nf4(kernel, *, double_quant: bool = False) -> dict:
  """kernel (any shape, size padded with zeros to a multiple of 64) -> {"codes": uint8 [blocks, 32], two
  NF4 indices per byte (the first in the high nibble), and "absmax": float32 [blocks]} or, with
  double_quant, {"codes", "absmax_q": int8 [groups * 256], "absmax_scale": float32 [groups],
  "absmax_mean": float32 []}. Each value takes the nearest NF4 value (the lower on a tie)."""
  w = jnp.ravel(jnp.asarray(kernel, jnp.float32))
  w = jnp.pad(w, (0, -w.size % NF4_BLOCK)).reshape(-1, NF4_BLOCK)
  absmax = jnp.max(jnp.abs(w), axis=1)
  normalised = w / jnp.where(absmax == 0, 1.0, absmax)[:, None]
  index = jnp.searchsorted(jnp.asarray((NF4[1:] + NF4[:-1]) / 2), normalised, side="left").astype(jnp.uint8)
  out = {"codes": (index[:, 0::2] << 4) | index[:, 1::2]}
  if not double_quant:
    return {**out, "absmax": absmax}
  mean = jnp.mean(absmax)
  centred = jnp.pad(absmax - mean, (0, -absmax.size % ABSMAX_BLOCK)).reshape(-1, ABSMAX_BLOCK)
  q = quantize_int8(centred.T)  # one scale per group of 256 absmaxes
  return {**out, "absmax_q": q["q"].T.reshape(-1), "absmax_scale": q["scale"], "absmax_mean": mean}


def dequantize(stored: dict, shape, dtype=jnp.float32):
  """The kernel of `shape` from `quantize_int8` or `quantize_nf4` storage, in `dtype` (decoded in float32)."""
  if "q" in stored:
    return (stored["q"].astype(jnp.float32) * stored["scale"]).astype(dtype)
  codes = stored["codes"]
  index = jnp.stack([codes >> 4, codes & 15], axis=-1).reshape(codes.shape[0], NF4_BLOCK)
  if "absmax" in stored:
    absmax = stored["absmax"]
  else:
    groups = stored["absmax_q"].reshape(-1, ABSMAX_BLOCK).astype(jnp.float32) * stored["absmax_scale"][:, None]
    absmax = groups.reshape(-1)[:codes.shape[0]] + stored["absmax_mean"]
  w = jnp.asarray(NF4)[index.astype(jnp.int32)] * absmax[:, None]
  return w.reshape(-1)[:math.prod(shape)].reshape(shape).astype(dtype)


def storage_bytes(shape, kind: str, *, in_dims: int = 1, double_quant: bool = False) -> int:
  """Bytes that `kind` storage of a kernel of `shape` takes (what `flaxforge plan` should count)."""
  size = math.prod(shape)
  if kind == "int8":
    return size + 4 * math.prod(shape[in_dims:])
  blocks = -(-size // NF4_BLOCK)
  if not double_quant:
    return blocks * NF4_BLOCK // 2 + 4 * blocks
  groups = -(-blocks // ABSMAX_BLOCK)
  return blocks * NF4_BLOCK // 2 + groups * ABSMAX_BLOCK + 4 * groups + 4


class QuantizedDense(nnx.Module):
  """An nnx.Linear or nnx.LinearGeneral (contracting its input's last axes with the kernel's first ones)
  whose kernel is stored quantized (`kind` in KINDS) and frozen; its bias stays an nnx.Param. The output
  is computed in the layer's dtype (else its parameters' dtype), as the layer computed it."""

  def __init__(self, layer, kind: str, *, double_quant: bool = False):
    if kind not in KINDS:
      raise UserError(f"unknown model.base_quant {kind!r}; use one of: {', '.join(KINDS)}")
    if not isinstance(layer, (nnx.Linear, nnx.LinearGeneral)) or getattr(layer, "batch_axis", None):
      raise UserError(f"model.base_quant quantizes dense layers only, not {type(layer).__name__}")
    kernel = layer.kernel[...]
    self.in_dims = len(layer.axis) if isinstance(layer, nnx.LinearGeneral) else 1
    self.shape, self.kind = tuple(kernel.shape), kind
    self.dtype = layer.dtype or kernel.dtype
    self.bias = layer.bias if getattr(layer, "bias", None) is not None else None
    names = layer.kernel.get_metadata().get("out_sharding")
    if kind == "int8":
      stored = quantize_int8(kernel, self.in_dims)
      self.q = QuantizedBase(stored["q"], out_sharding=names)
      self.scale = QuantizedBase(stored["scale"], out_sharding=names[self.in_dims:] if names else None)
    else:
      self.nf4 = nnx.Dict({k: QuantizedBase(v) for k, v in quantize_nf4(kernel, double_quant=double_quant).items()})

  def _stored(self) -> dict:
    if self.kind == "int8":
      return {"q": self.q[...], "scale": self.scale[...]}
    return {k: v[...] for k, v in self.nf4.items()}

  def kernel(self, dtype=jnp.float32):
    """The dequantized kernel [*in, *out] in `dtype`, for merging adapters into it and for export."""
    return dequantize(self._stored(), self.shape, dtype)

  def __call__(self, x):
    dtype = self.dtype
    x = x.astype(dtype)
    n = self.in_dims
    dims = ((tuple(range(x.ndim - n, x.ndim)), tuple(range(n))), ((), ()))
    if self.kind == "int8":
      q, scale = jax.lax.stop_gradient(self.q[...]), jax.lax.stop_gradient(self.scale[...])
      y = matmul.dot_general(x, q.astype(dtype), dims)
      y = (y.astype(jnp.float32) * scale).astype(dtype)
    else:
      y = matmul.dot_general(x, jax.lax.stop_gradient(self.kernel(dtype)), dims)
    if self.bias is not None:
      y = y + self.bias[...].astype(dtype)
    return y
