"""Shared transformer pieces for BERT and GPT: size presets, attention, MLP, pre-norm blocks and the
embedding + block stack.

Every parameter carries logical axis names (trainer/mesh.py maps them to mesh axes); parameters are
float32 and activations use `Arch.dtype`.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from flaxforge.models import matmul
from flaxforge.core.errors import UserError

# (num_layers, embed_dim, num_heads, mlp_dim). 125m and 350m are GPT-2 small and medium, 1b is GPT-3 XL
# (1.3B). 'small' is the CPU preset, 'tiny' the test one.
PRESETS = {
    "tiny": (2, 64, 2, 256),
    "small": (4, 256, 4, 1024),
    "125m": (12, 768, 12, 3072),
    "350m": (24, 1024, 16, 4096),
    "1b": (24, 2048, 16, 8192),
}


@dataclasses.dataclass(frozen=True)
class Arch:
  num_layers: int
  embed_dim: int
  num_heads: int
  mlp_dim: int
  max_len: int  # rows of the learned position table (unused with rope)
  vocab_size: int  # as the dataset gives it
  padded_vocab: int  # embedding rows: vocab_size rounded up so the 'vocab' axis shards evenly
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.dtype("float32")
  norm: str = "layer"  # layer | rms
  position: str = "rope"  # rope | learned
  use_bias: bool = True
  attention_impl: str = "auto"  # auto | xla | cudnn (see attention_implementation)

  @property
  def head_dim(self):
    return self.embed_dim // self.num_heads


def arch_from_config(cfg, info) -> Arch:
  """The cfg.size preset, with any explicit num_layers/embed_dim/num_heads/mlp_dim > 0 overriding it."""
  size = cfg.get("size", "small")
  if size not in PRESETS:
    raise UserError(f"unknown model.size {size!r}; use one of: {', '.join(PRESETS)}")
  fields = dict(zip(("num_layers", "embed_dim", "num_heads", "mlp_dim"), PRESETS[size]))
  for name in fields:
    if (cfg.get(name, 0) or 0) > 0:
      fields[name] = int(cfg.get(name))
  if fields["embed_dim"] % fields["num_heads"]:
    raise UserError(f"model.embed_dim {fields['embed_dim']} must be a multiple of model.num_heads "
                    f"{fields['num_heads']}")
  choices = {"norm": ("layer", "rms"), "position": ("rope", "learned"), "dtype": ("float32", "bfloat16"),
             "attention_impl": ("auto", "xla", "cudnn")}
  picked = {name: cfg.get(name, None) or options[0] for name, options in choices.items()}
  for name, value in picked.items():
    if value not in choices[name]:
      raise UserError(f"model.{name} must be one of {choices[name]}, not {value!r}")
  vocab, multiple = int(info["vocab_size"]), int(cfg.get("vocab_multiple", 128))
  return Arch(
      **fields,
      max_len=int(cfg.get("max_len", 0) or info["seq_len"]),
      vocab_size=vocab,
      padded_vocab=-(-vocab // multiple) * multiple,
      dropout=float(cfg.get("dropout", 0.0)),
      dtype=jnp.dtype(picked["dtype"]),
      norm=picked["norm"],
      position=picked["position"],
      # Biases are on by default (GPT-2/BERT style) also for speed: XLA:CPU ran the 'small' train step
      # 17-25% slower without them (a slower layout for the bias-free MLP backward).
      use_bias=bool(cfg.get("use_bias", True)),
      attention_impl=picked["attention_impl"],
  )


def normal(std, names):
  return nnx.with_partitioning(nnx.initializers.normal(std), names)


def zeros(names):
  return nnx.with_partitioning(nnx.initializers.zeros_init(), names)


def make_norm(arch: Arch, *, rngs):
  scale = nnx.with_partitioning(nnx.initializers.ones_init(), ("norm",))
  if arch.norm == "rms":
    return nnx.RMSNorm(arch.embed_dim, dtype=arch.dtype, scale_init=scale, rngs=rngs)
  return nnx.LayerNorm(arch.embed_dim, dtype=arch.dtype, scale_init=scale, bias_init=zeros(("norm",)),
                       rngs=rngs)


def rope(x, positions, base=10000.0):
  """Rotary position embedding, half-split layout. x: [B, T, N, H]; positions: int [T]."""
  half = x.shape[-1] // 2
  freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle = (positions.astype(jnp.float32)[:, None] * freq)[:, None, :]  # [T, 1, half]
  sin, cos = jnp.sin(angle), jnp.cos(angle)
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def attention_implementation(setting: str, dtype, head_dim: int):
  """jax.nn.dot_product_attention's `implementation` for a setting: 'auto' picks cuDNN's fused kernel for
  16-bit compute on an Ampere or newer GPU (1.85x faster train steps for 125m in bf16 on an H200), else
  XLA's, which runs everywhere."""
  if setting == "auto":
    device = jax.devices()[0]
    fits = jnp.dtype(dtype).itemsize == 2 and head_dim % 8 == 0 and head_dim <= 128
    newer = float(getattr(device, "compute_capability", 0) or 0) >= 8.0
    return "cudnn" if device.platform == "gpu" and fits and newer else None
  return None if setting == "xla" else setting


def attention_per_head(q, k, v, *, mask=None, is_causal=False):
  """jax.nn.dot_product_attention's XLA math, one head at a time: XLA:CPU runs N matmuls batched over B
  twice as fast as one batched over [B, N] (fwd+bwd of 4 heads of [32, 128, 64]: 15.6 ms against 23.5)."""
  if is_causal:
    causal = jnp.tril(jnp.ones((q.shape[1], k.shape[1]), bool))
    mask = causal if mask is None else mask & causal
  scale = 1.0 / math.sqrt(q.shape[-1])
  heads = []
  # unstack, not q[:, :, n]: its gradient is one concatenate rather than N zero-padded copies to add up
  for n, (qn, kn, vn) in enumerate(zip(*(jnp.unstack(a, axis=2) for a in (q, k, v)))):
    logits = jnp.einsum("bth,bsh->bts", qn, kn, preferred_element_type=jnp.float32) * scale
    if mask is not None:
      logits = jnp.where(mask[:, min(n, mask.shape[1] - 1)] if mask.ndim == 4 else mask, logits,
                         jnp.finfo(jnp.float32).min)
    heads.append(jnp.einsum("bts,bsh->bth", jax.nn.softmax(logits, axis=-1).astype(vn.dtype), vn))
  return jnp.stack(heads, axis=2)


def _residual_std(arch: Arch):
  # GPT-2: projections that write into the residual stream start at 0.02 / sqrt(2 * layers).
  return 0.02 / math.sqrt(2 * arch.num_layers)


class Attention(nnx.Module):

  def __init__(self, arch: Arch, *, rngs):
    d, n, h = arch.embed_dim, arch.num_heads, arch.head_dim
    kw = dict(use_bias=arch.use_bias, dtype=arch.dtype, dot_general=matmul.dot_general, rngs=rngs)
    # One [d, 3, N, H] projection: a single wide matmul runs faster on CPUs than three narrow ones.
    self.qkv = nnx.LinearGeneral(d, (3, n, h), kernel_init=normal(0.02, ("embed", "qkv", "heads", "kv")),
                                 bias_init=zeros(("qkv", "heads", "kv")), **kw)
    self.out = nnx.LinearGeneral((n, h), d, axis=(-2, -1), bias_init=zeros(("embed",)),
                                 kernel_init=normal(_residual_std(arch), ("heads", "kv", "embed")), **kw)
    self.use_rope = arch.position == "rope"
    self.impl = arch.attention_impl
    self.head_dim = h

  def __call__(self, x, positions, *, mask=None, is_causal=False, cache=None, index=None):
    """x [B, T, d] -> ([B, T, d], cache). With a cache ({'k', 'v'}: [B, L, N, H]) the new keys and values
    are written at [index, index + T) and the queries attend over all L slots, so `mask` must hide the
    slots after each query's position."""
    q, k, v = (y[:, :, 0] for y in jnp.split(self.qkv(x), 3, axis=2))
    if self.use_rope:
      q, k = rope(q, positions), rope(k, positions)
    if cache is not None:
      k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), (0, index, 0, 0))
      v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), (0, index, 0, 0))
      cache = {"k": k, "v": v}
      k, v = k.astype(q.dtype), v.astype(q.dtype)
    # A fused kernel buys nothing for a few decode queries, so the cached path keeps XLA's.
    impl = attention_implementation(self.impl, q.dtype, self.head_dim) if cache is None else None
    if impl == "cudnn" and mask is not None:  # cuDNN takes a mask only as a full [.., T, S] bias
      mask = jnp.broadcast_to(mask, mask.shape[:2] + (q.shape[1], k.shape[1]))
    if impl is None and cache is None and jax.default_backend() == "cpu":
      y = attention_per_head(q, k, v, mask=mask, is_causal=is_causal)
    else:
      y = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=is_causal, implementation=impl)
    return self.out(y), cache


class MLP(nnx.Module):

  def __init__(self, arch: Arch, *, rngs):
    kw = dict(use_bias=arch.use_bias, dtype=arch.dtype, dot_general=matmul.dot_general, rngs=rngs)
    self.up = nnx.Linear(arch.embed_dim, arch.mlp_dim, kernel_init=normal(0.02, ("embed", "mlp")),
                         bias_init=zeros(("mlp",)), **kw)
    self.down = nnx.Linear(arch.mlp_dim, arch.embed_dim, bias_init=zeros(("embed",)),
                           kernel_init=normal(_residual_std(arch), ("mlp", "embed")), **kw)

  def __call__(self, x):
    return self.down(jax.nn.gelu(self.up(x)))


class Block(nnx.Module):
  """Pre-norm: x + attention(norm(x)), then x + mlp(norm(x))."""

  def __init__(self, arch: Arch, *, rngs):
    self.attn_norm = make_norm(arch, rngs=rngs)
    self.attn = Attention(arch, rngs=rngs)
    self.mlp_norm = make_norm(arch, rngs=rngs)
    self.mlp = MLP(arch, rngs=rngs)
    self.dropout = nnx.Dropout(arch.dropout, rngs=rngs)

  def __call__(self, x, positions, **attention_kwargs):
    h, cache = self.attn(self.attn_norm(x), positions, **attention_kwargs)
    x = x + self.dropout(h)
    return x + self.dropout(self.mlp(self.mlp_norm(x))), cache


class Transformer(nnx.Module):
  """Token (+ learned position) embedding -> blocks -> final norm."""

  def __init__(self, arch: Arch, *, rngs):
    self.arch = arch
    self.embed = nnx.Embed(arch.padded_vocab, arch.embed_dim, dtype=arch.dtype,
                           embedding_init=normal(0.02, ("vocab", "embed")), rngs=rngs)
    self.pos_embed = (nnx.Embed(arch.max_len, arch.embed_dim, dtype=arch.dtype,
                                embedding_init=normal(0.02, ("length", "embed")), rngs=rngs)
                      if arch.position == "learned" else None)
    self.dropout = nnx.Dropout(arch.dropout, rngs=rngs)
    self.blocks = nnx.List([Block(arch, rngs=rngs) for _ in range(arch.num_layers)])
    self.final_norm = make_norm(arch, rngs=rngs)

  def __call__(self, tokens, positions, *, caches=None, **attention_kwargs):
    """tokens int [B, T], positions int [T] -> (hidden [B, T, d], updated caches or None)."""
    if self.pos_embed is not None and tokens.shape[1] > self.arch.max_len:
      raise UserError(f"sequence length {tokens.shape[1]} exceeds model.max_len {self.arch.max_len} "
                      "(the learned position table); raise model.max_len or use model.position='rope'")
    x = self.embed(tokens)
    if self.pos_embed is not None:
      x = x + self.pos_embed(positions)
    x = self.dropout(x)
    new_caches = []
    for i, block in enumerate(self.blocks):
      x, cache = block(x, positions, cache=None if caches is None else caches[i], **attention_kwargs)
      new_caches.append(cache)
    return self.final_norm(x), (new_caches if caches is not None else None)


# FLOP convention (as in shared/bench/common.py): FLOPs = 2 x the multiply-accumulates of matmuls and
# convolutions; embeddings, activations, softmax, norms, pooling and the optimizer are not counted. A training
# step costs 3 x forward, except where an input gradient is never needed (a first layer fed by data).
def transformer_flops_per_token(num_layers, embed_dim, mlp_dim, seq_len, vocab_size, *, qkv_dim=None,
                                training=True, causal=False):
  """FLOPs per token of a transformer (GPT/BERT body, plus an LM head if vocab_size > 0).

  With a = qkv_dim (num_heads * head_dim, default embed_dim), d = embed_dim, T = seq_len:
    N        = L * (4*d*a + 2*d*mlp) + d*vocab   matmul weights (q, k, v, out; mlp up, down; LM head)
    attn     = 4 * L * T * a                     QK^T and AV: 2*T*a FLOPs each, per token and layer
    forward  = 2*N + attn
    training = 3 * forward = 6*N + 12*L*T*a      (the PaLM paper's formula)
  causal=True halves the attention term (a query needs only the keys before it); leave it False for
  jax.nn.dot_product_attention's XLA path, which computes all T x T scores and masks them.
  """
  a = qkv_dim or embed_dim
  n_matmul = num_layers * (4 * embed_dim * a + 2 * embed_dim * mlp_dim) + embed_dim * vocab_size
  attn = 4 * num_layers * seq_len * a * (0.5 if causal else 1.0)
  forward = 2 * n_matmul + attn
  return 3 * forward if training else forward


def transformer_classifier_flops_per_example(num_layers, embed_dim, mlp_dim, seq_len, num_classes, *,
                                             qkv_dim=None, training=True):
  """Encoder over seq_len tokens + one pooled [d, classes] head (matches bench/common.py)."""
  body = seq_len * transformer_flops_per_token(num_layers, embed_dim, mlp_dim, seq_len, 0, qkv_dim=qkv_dim,
                                               training=False)
  forward = body + 2 * embed_dim * num_classes
  return 3 * forward if training else forward
