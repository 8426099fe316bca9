"""Attention's maths: rotary position embeddings (RoPE) and scaled dot-product attention, on the kernel that
suits the platform (cuDNN's fused one, XLA's, or on CPUs one head at a time with FlashAttention's backward).

Shapes: q [B, T, N, H], k and v [B, S, K, H] (K key/value heads, N a multiple of K: grouped-query attention);
a mask is boolean, broadcastable to [B, N, T, S], True where a query may see a key.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from flaxforge.core.errors import UserError


def rope_frequencies(head_dim: int, base: float = 10000.0, scaling: tuple = ()) -> np.ndarray:
  """float32 [head_dim / 2] inverse frequencies, base^(-2i / head_dim), rescaled as Hugging Face's
  rope_parameters say: rope_type 'default', 'linear' (all divided by factor) or 'llama3' (low frequencies
  divided by factor, high ones kept, a smooth blend between; Llama 3.1's long-context scaling)."""
  inv = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
  params = dict(scaling)
  kind = params.get("rope_type", params.get("type", "default"))
  if kind == "linear":
    inv = inv / params["factor"]
  elif kind == "llama3":
    factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
    old_len = params["original_max_position_embeddings"]
    wavelen = 2 * np.pi / inv
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * inv / factor + smooth * inv
    inv = np.where(wavelen > old_len / low, inv / factor, np.where(wavelen < old_len / high, inv, blended))
  elif kind != "default":
    raise UserError(f"rope_type {kind!r} is not supported; use a model with rope_type default, linear or llama3")
  return inv.astype(np.float32)


def rope(x, positions, inv_freq):
  """Rotary position embedding, half-split layout (Hugging Face's rotate_half). x: [B, T, N, H];
  positions: int [T], or [B, T] (packed rows: each example's own); inv_freq: float32 [H / 2] (rope_frequencies)."""
  angle = (positions.astype(jnp.float32)[..., None] * inv_freq)[..., None, :]  # [(B,) T, 1, half]
  sin, cos = jnp.sin(angle), jnp.cos(angle)
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def attention_implementation(setting: str, dtype, head_dim: int):
  """jax.nn.dot_product_attention's `implementation` for model.attention_impl: 'auto' picks cuDNN's fused
  kernel for 16-bit compute on an Ampere or newer GPU, where it is much faster (BENCHMARKS.md, "GPU"), else
  XLA's, which runs everywhere."""
  if setting == "auto":
    device = jax.devices()[0]
    fits = jnp.dtype(dtype).itemsize == 2 and head_dim % 8 == 0 and head_dim <= 128
    newer = float(getattr(device, "compute_capability", 0) or 0) >= 8.0
    return "cudnn" if device.platform == "gpu" and fits and newer else None
  return None if setting == "xla" else setting


def attend(q, k, v, *, setting: str, mask=None, is_causal=False, cached=False, scale=None, softcap=0.0):
  """softmax(q k^T * scale + mask) v: [B, T, N, H], on the kernel `setting` (model.attention_impl) picks.
  scale: None = 1 / sqrt(H). softcap > 0: the scaled logits become softcap * tanh(logits / softcap) before the
  mask (Gemma 2; transformers' eager_attention_forward), which only flaxforge's own kernels compute. With a KV
  cache (`cached`: a few decode queries, where a fused kernel buys nothing) always XLA's."""
  impl = None if cached or softcap else attention_implementation(setting, q.dtype, q.shape[-1])
  if impl == "cudnn" and mask is not None:  # cuDNN takes a mask only as a full [.., T, S] bias
    mask = jnp.broadcast_to(mask, mask.shape[:2] + (q.shape[1], k.shape[1]))
  if impl is None and not cached and jax.default_backend() == "cpu":
    return attention_per_head(q, k, v, mask=mask, is_causal=is_causal, scale=scale, softcap=softcap)
  if softcap:
    return attention_all_heads(q, k, v, mask=mask, is_causal=is_causal, scale=scale, softcap=softcap)
  return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=is_causal, scale=scale, implementation=impl)


def _bias(mask, is_causal, t, s):
  """The additive float32 bias of `mask` (and causality): 0 where a query sees a key, the lowest float32
  elsewhere; broadcastable to [B, N, T, S]."""
  if is_causal:
    causal = jnp.tril(jnp.ones((t, s), bool))
    mask = causal if mask is None else mask & causal
  return jnp.zeros((1, 1, 1, 1), jnp.float32) if mask is None else jnp.where(mask, 0.0, jnp.finfo(jnp.float32).min)


def attention_all_heads(q, k, v, *, mask=None, is_causal=False, scale=None, softcap=0.0):
  """attend's maths in plain XLA ops over all heads at once (what jax.nn.dot_product_attention lacks: logit
  soft-capping), differentiated by JAX; k and v may have fewer heads than q (grouped-query attention)."""
  b, t, n, h = q.shape
  kv = k.shape[2]
  scale = 1.0 / math.sqrt(h) if scale is None else scale
  qg = (q * jnp.asarray(scale, q.dtype)).reshape(b, t, kv, n // kv, h)
  logits = jnp.einsum("btkgh,bskh->bkgts", qg, k, preferred_element_type=jnp.float32)
  if softcap:
    logits = softcap * jnp.tanh(logits / softcap)
  bias = _bias(mask, is_causal, t, k.shape[1])
  bias = bias.reshape(bias.shape[0], kv, n // kv, *bias.shape[2:]) if bias.shape[1] == n else bias[:, :, None]
  probs = jax.nn.softmax(logits + bias, axis=-1)
  return jnp.einsum("bkgts,bskh->btkgh", probs.astype(v.dtype), v).reshape(b, t, n, h)


def attention_per_head(q, k, v, *, mask=None, is_causal=False, scale=None, softcap=0.0):
  """jax.nn.dot_product_attention's XLA math, one head at a time: XLA:CPU runs N matmuls batched over B
  faster than one batched over [B, N] (BENCHMARKS.md, "Attention one head at a time on CPUs"). k and v may
  have fewer heads than q (grouped-query attention): query head n reads key head n // group. scale and
  softcap as `attend` says."""
  bias = _bias(mask, is_causal, q.shape[1], k.shape[1])
  group = q.shape[2] // k.shape[2]
  scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
  # unstack, not q[:, :, n]: its gradient is one concatenate rather than N zero-padded copies to add up
  ks, vs = jnp.unstack(k, axis=2), jnp.unstack(v, axis=2)
  qs = jnp.unstack(q * jnp.asarray(scale, q.dtype), axis=2)
  head_bias = lambda n: bias[:, min(n, bias.shape[1] - 1)] if bias.ndim == 4 else bias
  heads = [_one_head(qn, ks[n // group], vs[n // group], head_bias(n), float(softcap)) for n, qn in enumerate(qs)]
  return jnp.stack(heads, axis=2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _one_head(q, k, v, bias, softcap):
  """softmax(q k^T + bias) v for one head: q [B, T, H] (already scaled), k and v [B, S, H], bias float32
  broadcastable to [B, T, S] (0, or the lowest float32 where a key is hidden); softcap > 0 caps the logits
  (before the bias) at +-softcap with tanh."""
  return _one_head_forward(q, k, v, bias, softcap)[0]


def _one_head_forward(q, k, v, bias, softcap):
  logits = jnp.einsum("bth,bsh->bts", q, k, preferred_element_type=jnp.float32)
  capped = jnp.tanh(logits / softcap) if softcap else None
  probs = jax.nn.softmax((logits if capped is None else softcap * capped) + bias, axis=-1)
  out = jnp.einsum("bts,bsh->bth", probs.astype(v.dtype), v)
  return out, (q, k, v, probs, out, capped)


def _one_head_backward(softcap, residuals, d_out):
  # FlashAttention's backward (Dao et al. 2022, alg. 2): rowsum(dP * P) = rowsum(dO * O), a reduction over
  # the head dimension instead of over the keys. The mask is an additive bias (lowest + logit rounds to
  # lowest, so a hidden key gets exactly 0, as with a select), which XLA:CPU runs faster than its autodiff of
  # a select-masked forward (BENCHMARKS.md, "Attention's backward"; benchmarks/attention_cpu.py). A soft cap
  # multiplies by its derivative, 1 - tanh^2.
  q, k, v, probs, out, capped = residuals
  d_v = jnp.einsum("bts,bth->bsh", probs.astype(d_out.dtype), d_out).astype(v.dtype)
  d_probs = jnp.einsum("bth,bsh->bts", d_out, v, preferred_element_type=jnp.float32)
  row = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1, keepdims=True)
  d_logits = probs * (d_probs - row)
  if capped is not None:
    d_logits = d_logits * (1 - jnp.square(capped))
  d_logits = d_logits.astype(q.dtype)
  d_q = jnp.einsum("bts,bsh->bth", d_logits, k).astype(q.dtype)
  d_k = jnp.einsum("bts,bth->bsh", d_logits, q).astype(k.dtype)
  return d_q, d_k, d_v, None


_one_head.defvjp(_one_head_forward, _one_head_backward)
