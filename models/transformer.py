"""The one transformer of flaxforge, for BERT and GPT and for the Hugging Face families they load (BERT,
GPT-2, Llama/Mistral/Qwen2/Qwen3, Gemma 2/3): its architecture (`Arch`, from a config's size preset and
fields), the blocks (attention's projections, multi-head or grouped-query, per-layer sliding windows; a plain
or gated MLP; pre-, sandwich- or post-norm), the embedding + block stack, and its FLOP count. Attention's
maths and RoPE are in models/attention.py.

Every parameter carries logical axis names (trainer/mesh.py maps them to mesh axes); parameters are stored
in `Arch.param_dtype` and activations use `Arch.dtype`. `Arch.remat` checkpoints each block's activations
(REMAT_POLICIES); `Arch.scan_layers` runs the blocks as one scan (scan_blocks).
"""
import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from flaxforge.core.errors import UserError
from flaxforge.models import attention, fields, matmul, sharding
from flaxforge.models.dropout import Dropout
from flaxforge.models.initializers import normal, zeros


@dataclasses.dataclass(frozen=True)
class Arch:
  num_layers: int
  embed_dim: int
  num_heads: int
  mlp_dim: int
  max_len: int  # positions a sequence may use: the learned table's rows less position_offset (unused with rope)
  vocab_size: int  # as the dataset gives it
  padded_vocab: int  # embedding rows: vocab_size rounded up so the 'vocab' axis shards evenly
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.dtype("float32")
  norm: str = "layer"  # layer | rms
  position: str = "rope"  # rope | learned
  use_bias: bool = True  # on every dense layer but q/k/v, which follow qkv_bias
  attention_impl: str = "auto"  # auto | xla | cudnn (attention.attention_implementation)
  # What pretrained families need; the defaults are flaxforge's own from-scratch models.
  qkv_bias: bool = True
  num_kv_heads: int = 0  # grouped-query attention (Llama): key/value heads, 0 = num_heads
  block: str = "pre"  # pre: x + f(norm(x)), then a final norm | post (BERT): norm(x + f(x)), embeddings normed
  activation: str = "gelu_tanh"  # gelu_tanh (GPT-2's gelu_new) | gelu (exact erf, BERT's) | silu
  gated_mlp: bool = False  # down(act(gate(x)) * up(x)), SwiGLU with silu (Llama)
  norm_eps: float = 1e-6
  token_types: int = 0  # rows of a token-type (segment) embedding added to the input (BERT), 0 = none
  rope_base: float = 10000.0
  rope_scaling: tuple = ()  # Hugging Face's rope_parameters as sorted (key, value) pairs (rope_frequencies)
  param_dtype: jnp.dtype = jnp.dtype("float32")  # stored parameters; Arch.dtype is the compute dtype
  remat: str = "none"  # activation checkpointing of each block: none or a REMAT_POLICIES key
  scan_layers: bool = False  # the blocks run as one jax.lax.scan in a forward pass without caches (scan_blocks)
  # --- Hugging Face decoder families (models/hf: Qwen3, Gemma 2 and 3, Mistral's window) ---
  head_size: int = 0  # each head's width; 0 = embed_dim // num_heads (Gemma and Qwen3 set their own)
  qk_norm: bool = False  # each head's queries and keys RMS-normalised before RoPE (Qwen3, Gemma 3)
  norm_offset: float = 0.0  # RMSNorm multiplies by (norm_offset + scale), the scale starting at 0: Gemma's 1
  sandwich_norm: bool = False  # pre-norm blocks also normalise each sublayer's output before the residual (Gemma)
  embed_scale: bool = False  # token embeddings times sqrt(embed_dim) (Gemma)
  attn_scale: float = 0.0  # the queries' scale; 0 = 1 / sqrt(head_dim) (Gemma: query_pre_attn_scalar^-1/2)
  attn_softcap: float = 0.0  # attention logits become cap * tanh(logits / cap); 0 = none (Gemma 2)
  logit_softcap: float = 0.0  # the language model's logits likewise (Gemma 2)
  windows: tuple = ()  # per layer, a query sees the `window` latest positions (itself included); 0 or () = all
  local_rope_base: float = 0.0  # RoPE base of the windowed layers; 0 = rope_base (Gemma 3's local layers)
  local_rope_scaling: tuple = ()  # their rope_scaling, when local_rope_base is set
  # --- encoder and vision families (models/hf roberta, distilbert, vit) ---
  model_type: str = ""  # the Hugging Face model_type read ('' = flaxforge's own), for families alike in maths
  position_offset: int = 0  # learned position rows before position 0 (RoBERTa: its padding index + 1)
  pooler_activation: str = "tanh"  # model.pool='pooler': tanh (BERT, RoBERTa) | relu (DistilBERT's pre_classifier)
  patch_size: int = 0  # ViT: an image embeds as square patches of this many pixels (0: token ids embed)
  image_size: tuple = ()  # ViT: (height, width) in pixels, a multiple of patch_size
  channels: int = 3  # ViT: image channels
  # --- end of encoder and vision families ---

  @property
  def head_dim(self):
    return self.head_size or self.embed_dim // self.num_heads

  def window(self, layer: int) -> int:
    """How many latest positions layer `layer`'s queries see (itself included); 0 = all."""
    return self.windows[layer] if self.windows else 0

  @property
  def kv_heads(self):
    return self.num_kv_heads or self.num_heads

  def flops_shape(self) -> dict:
    """transformer_flops_per_token's keyword arguments for this architecture."""
    return {"qkv_dim": self.num_heads * self.head_dim, "kv_dim": self.kv_heads * self.head_dim,
            "gated": self.gated_mlp}


def arch_from_config(cfg, info, pretrained=None) -> Arch:
  """The architecture `cfg` (`config.model`: fields.TransformerShape) describes for the dataset `info`: the
  cfg.size preset, with any explicit num_layers/embed_dim/num_heads/mlp_dim > 0 overriding it. Or, given
  `pretrained` (a models.hf.Pretrained: what a Hugging Face config.json says), that architecture. Either
  computes as fields.TransformerCompute says (dtype, param_dtype, dropout, attention_impl, remat,
  scan_layers). Raises UserError when the heads do not divide the width or the key/value heads the heads."""
  compute = fields.TransformerCompute.read(cfg)
  how = dict(dtype=jnp.dtype(compute.dtype), dropout=compute.dropout, attention_impl=compute.attention_impl,
             param_dtype=jnp.dtype(compute.param_dtype), remat=compute.remat, scan_layers=compute.scan_layers)
  if pretrained is not None:
    return dataclasses.replace(pretrained.arch, **how)
  shape = fields.TransformerShape.read(cfg)
  sizes = {name: getattr(shape, name) or preset
           for name, preset in zip(("num_layers", "embed_dim", "num_heads", "mlp_dim"), fields.PRESETS[shape.size])}
  if sizes["embed_dim"] % sizes["num_heads"]:
    raise UserError(f"model.embed_dim {sizes['embed_dim']} must be a multiple of model.num_heads "
                    f"{sizes['num_heads']}")
  if shape.num_kv_heads and sizes["num_heads"] % shape.num_kv_heads:
    raise UserError(f"model.num_heads {sizes['num_heads']} must be a multiple of model.num_kv_heads "
                    f"{shape.num_kv_heads}")
  vocab = int(info["vocab_size"])
  # Biases are on by default (GPT-2/BERT style), also because XLA:CPU lays out the bias-free MLP's backward
  # more slowly.
  return Arch(**sizes, max_len=shape.max_len or int(info["seq_len"]), vocab_size=vocab,
              padded_vocab=-(-vocab // shape.vocab_multiple) * shape.vocab_multiple, norm=shape.norm,
              position=shape.position, use_bias=shape.use_bias, qkv_bias=shape.use_bias,
              num_kv_heads=shape.num_kv_heads, activation=shape.mlp_activation, gated_mlp=shape.gated_mlp, **how)


def make_norm(arch: Arch, dim: int = 0, *, rngs):
  """The norm arch.norm names over the last axis, of width `dim` (0 = embed_dim)."""
  dim = dim or arch.embed_dim
  if arch.norm == "rms" and arch.norm_offset:
    return OffsetRMSNorm(dim, offset=arch.norm_offset, epsilon=arch.norm_eps, dtype=arch.dtype,
                         param_dtype=arch.param_dtype, rngs=rngs)
  scale = nnx.with_partitioning(nnx.initializers.ones_init(), ("norm",))
  kw = dict(epsilon=arch.norm_eps, dtype=arch.dtype, param_dtype=arch.param_dtype, scale_init=scale, rngs=rngs)
  if arch.norm == "rms":
    return nnx.RMSNorm(dim, **kw)
  return nnx.LayerNorm(dim, bias_init=zeros(("norm",)), **kw)


class OffsetRMSNorm(nnx.Module):
  """Gemma's RMSNorm (transformers' Gemma2RMSNorm): x / sqrt(mean(x^2) + eps) * (offset + scale), in float32,
  then in `dtype`. The scale is stored as Hugging Face stores it and starts at 0."""

  def __init__(self, dim: int, *, offset: float, epsilon: float, dtype, param_dtype=jnp.float32, rngs):
    self.scale = nnx.Param(zeros(("norm",))(rngs.params(), (dim,), param_dtype))
    self.offset, self.epsilon, self.dtype = offset, epsilon, dtype

  def __call__(self, x):
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.epsilon)
    return (y * (self.offset + self.scale[...].astype(jnp.float32))).astype(self.dtype)


def gelu_erf(x):
  """Exact GELU as PyTorch and BERT write it, x * (1 + erf(x / sqrt 2)) / 2. jax.nn.gelu(approximate=False)
  uses erfc instead (exact in the far negative tail), which XLA:CPU differentiates more slowly (BENCHMARKS.md,
  "Exact GELU"); the two differ by < 1e-6."""
  return x * (0.5 + 0.5 * jax.lax.erf(x * (1 / math.sqrt(2))))


ACTIVATIONS = {"gelu_tanh": jax.nn.gelu, "gelu": gelu_erf, "silu": jax.nn.silu}


def take_positions(x, index):
  """x [B, T, ...] at index int [B, P] -> [B, P, ...]."""
  return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def _residual_std(arch: Arch):
  # GPT-2: projections that write into the residual stream start at 0.02 / sqrt(2 * layers).
  return 0.02 / math.sqrt(2 * arch.num_layers)


class Attention(nnx.Module):
  """Multi-head attention with one [d, 3, N, H] q/k/v projection (a single wide matmul runs faster on CPUs
  than three narrow ones); with fewer key/value heads K than query heads (GQA), a [d, N, H] query and a
  [d, 2, K, H] key/value projection instead. Layer `layer`'s window (arch.window) and, for a windowed layer,
  the local RoPE (arch.local_rope_base) apply."""

  def __init__(self, arch: Arch, *, layer: int = 0, rngs):
    d, n, h, kv = arch.embed_dim, arch.num_heads, arch.head_dim, arch.kv_heads
    kw = dict(dtype=arch.dtype, param_dtype=arch.param_dtype, dot_general=matmul.dot_general, rngs=rngs)
    project = lambda shape, names: nnx.LinearGeneral(
        d, shape, kernel_init=normal(0.02, ("embed",) + names), bias_init=zeros(names), use_bias=arch.qkv_bias,
        **kw)
    if kv == n:
      self.qkv = project((3, n, h), ("qkv", "heads", "kv"))
    else:
      self.q = project((n, h), ("heads", "kv"))
      self.kv = project((2, kv, h), ("qkv", "heads", "kv"))
    self.out = nnx.LinearGeneral((n, h), d, axis=(-2, -1), bias_init=zeros(("embed",)), use_bias=arch.use_bias,
                                 kernel_init=normal(_residual_std(arch), ("heads", "kv", "embed")), **kw)
    if arch.qk_norm:
      self.q_norm, self.k_norm = make_norm(arch, h, rngs=rngs), make_norm(arch, h, rngs=rngs)
    self.window = arch.window(layer)
    local = self.window and arch.local_rope_base
    base, scaling = (arch.local_rope_base, arch.local_rope_scaling) if local else (arch.rope_base, arch.rope_scaling)
    self.inv_freq = (tuple(attention.rope_frequencies(h, base, scaling).tolist())
                     if arch.position == "rope" else None)
    self.scale, self.softcap = arch.attn_scale or None, arch.attn_softcap
    self.impl = arch.attention_impl

  def __call__(self, x, positions, *, mask=None, is_causal=False, cache=None, index=None, query_index=None):
    """x [B, T, d] -> ([B, T, d], cache). With a cache ({'k', 'v'}: [B, L, K, H], slot = position) the new
    keys and values are written at [index, index + T) and the queries attend over all L slots, so `mask` must
    hide the slots after each query's position. With query_index (int [B, P]) only those positions query:
    every token is still a key and value, and the result is [B, P, d]."""
    if hasattr(self, "qkv"):
      q, k, v = (y[:, :, 0] for y in jnp.split(self.qkv(x), 3, axis=2))
    else:
      q, (k, v) = self.q(x), (y[:, :, 0] for y in jnp.split(self.kv(x), 2, axis=2))
    if hasattr(self, "q_norm"):
      q, k = self.q_norm(q), self.k_norm(k)
    if self.inv_freq is not None:
      inv_freq = jnp.asarray(self.inv_freq, jnp.float32)
      q, k = attention.rope(q, positions, inv_freq), attention.rope(k, positions, inv_freq)
    if cache is not None:
      k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), (0, index, 0, 0))
      v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), (0, index, 0, 0))
      cache = {"k": k, "v": v}
      k, v = k.astype(q.dtype), v.astype(q.dtype)
    query_positions = positions[None]  # [1, T]
    if query_index is not None:
      q, query_positions = take_positions(q, query_index), positions[query_index]
      if is_causal:  # the queries sit at query_index, not at 0..P-1
        causal = query_index[:, None, :, None] >= jnp.arange(k.shape[1])
        mask, is_causal = (causal if mask is None else mask & causal), False
    if self.window:  # keys more than window - 1 positions back are hidden (later ones: causality's part)
      key_positions = jnp.arange(k.shape[1]) if cache is not None else positions
      near = (query_positions[:, None, :, None] - key_positions) < self.window  # [1 or B, 1, T, S]
      mask = near if mask is None else mask & near
    y = attention.attend(q, k, v, setting=self.impl, mask=mask, is_causal=is_causal, cached=cache is not None,
                         scale=self.scale, softcap=self.softcap)
    return self.out(y), cache


class MLP(nnx.Module):
  """down(act(up(x))), or gated: down(act(gate(x)) * up(x))."""

  def __init__(self, arch: Arch, *, rngs):
    kw = dict(use_bias=arch.use_bias, dtype=arch.dtype, param_dtype=arch.param_dtype,
              dot_general=matmul.dot_general, rngs=rngs)
    widen = lambda: nnx.Linear(arch.embed_dim, arch.mlp_dim, kernel_init=normal(0.02, ("embed", "mlp")),
                               bias_init=zeros(("mlp",)), **kw)
    self.gate = widen() if arch.gated_mlp else None
    self.up = widen()
    self.down = nnx.Linear(arch.mlp_dim, arch.embed_dim, bias_init=zeros(("embed",)),
                           kernel_init=normal(_residual_std(arch), ("mlp", "embed")), **kw)
    self.activation = arch.activation

  def __call__(self, x):
    act = ACTIVATIONS[self.activation]
    h = act(self.up(x)) if self.gate is None else act(self.gate(x)) * self.up(x)
    return self.down(h)


class Block(nnx.Module):
  """Pre-norm: x + attention(norm(x)), then x + mlp(norm(x)); with arch.sandwich_norm (Gemma) each sublayer's
  output is normalised too, x + norm(attention(norm(x))). Post-norm (BERT): norm(x + attention(x)), then
  norm(x + mlp(x))."""

  def __init__(self, arch: Arch, *, layer: int = 0, rngs):
    self.attn_norm = make_norm(arch, rngs=rngs)
    self.attn = Attention(arch, layer=layer, rngs=rngs)
    self.mlp_norm = make_norm(arch, rngs=rngs)
    self.mlp = MLP(arch, rngs=rngs)
    if arch.sandwich_norm:
      self.attn_out_norm, self.mlp_out_norm = make_norm(arch, rngs=rngs), make_norm(arch, rngs=rngs)
    self.dropout = Dropout(arch.dropout, rngs=rngs)
    self.post_norm = arch.block == "post"

  def __call__(self, x, positions, *, query_index=None, **attention_kwargs):
    """x [B, T, d] -> ([B, T, d], cache); with query_index (int [B, P]) [B, P, d]: the block's output at
    those positions only (see Attention)."""
    residual = x if query_index is None else take_positions(x, query_index)
    if self.post_norm:
      h, cache = self.attn(x, positions, query_index=query_index, **attention_kwargs)
      x = self.attn_norm(residual + self.dropout(h))
      return self.mlp_norm(x + self.dropout(self.mlp(x))), cache
    sandwich = hasattr(self, "attn_out_norm")
    h, cache = self.attn(self.attn_norm(x), positions, query_index=query_index, **attention_kwargs)
    x = residual + self.dropout(self.attn_out_norm(h) if sandwich else h)
    h = self.mlp(self.mlp_norm(x))
    return x + self.dropout(self.mlp_out_norm(h) if sandwich else h), cache


class Transformer(nnx.Module):
  """Token (+ learned position, + token type) embedding -> blocks -> final norm (pre-norm); post-norm
  normalises the embeddings instead."""

  def __init__(self, arch: Arch, *, rngs):
    self.arch = arch
    table = lambda rows, names: nnx.Embed(rows, arch.embed_dim, dtype=arch.dtype, param_dtype=arch.param_dtype,
                                          embedding_init=normal(0.02, names), rngs=rngs)
    self.embed = table(arch.padded_vocab, ("vocab", "embed")) if not arch.patch_size else None  # ViT: patches
    self.pos_embed = (table(arch.max_len + arch.position_offset, ("length", "embed"))
                      if arch.position == "learned" else None)
    self.type_embed = table(arch.token_types, ("length", "embed")) if arch.token_types else None
    self.embed_norm = make_norm(arch, rngs=rngs) if arch.block == "post" else None
    self.dropout = Dropout(arch.dropout, rngs=rngs)
    self.blocks = nnx.List([Block(arch, layer=i, rngs=rngs) for i in range(arch.num_layers)])
    self.final_norm = make_norm(arch, rngs=rngs) if arch.block == "pre" else None

  def __call__(self, tokens, positions, *, token_types=None, caches=None, output_positions=None, embedded=None,
               **attention_kwargs):
    """tokens int [B, T], positions int [T], token_types int [B, T] (default 0; only with arch.token_types)
    -> (hidden [B, T, d], updated caches or None). Learned positions read table row position_offset + t.
    embedded (float [B, T, d], with tokens None): inputs already embedded (ViT's patches), in place of the
    token embedding.

    output_positions (int [B, P], not with caches): return hidden [B, P, d] at those positions only. The
    last block then runs its queries, MLP and norms for those P positions alone, since no other position
    of its output is read; every token still serves as a key and value. The values are the same as
    taking them from the full output (up to float rounding; dropout draws other bits), and a pooled
    classifier's step does about 1/L less work (MiniLM, 6 layers: 14% fewer matmul FLOPs)."""
    x = self.embed(tokens) if embedded is None else embedded.astype(self.arch.dtype)
    if self.pos_embed is not None and x.shape[1] > self.arch.max_len:
      raise UserError(f"sequence length {x.shape[1]} exceeds model.max_len {self.arch.max_len} "
                      "(the learned position table); raise model.max_len or use model.position='rope'")
    if self.arch.embed_scale:  # in the embeddings' dtype, as transformers' Gemma2TextScaledWordEmbedding
      x = x * jnp.asarray(math.sqrt(self.arch.embed_dim), jnp.float32).astype(x.dtype)
    if self.pos_embed is not None:
      x = x + self.pos_embed(positions + self.arch.position_offset)
    if self.type_embed is not None:
      x = x + self.type_embed(jnp.zeros_like(tokens) if token_types is None else token_types)
    if self.embed_norm is not None:
      x = self.embed_norm(x)
    x = sharding.constrain(self.dropout(x), HIDDEN)
    new_caches = []
    last = len(self.blocks) - 1
    call = remat_call(self.arch.remat) if caches is None else _call  # nothing to remat without a backward pass
    first = 0
    if self.arch.scan_layers and caches is None:
      first = last if output_positions is not None else last + 1  # a pooled step's last block runs alone
      x = scan_blocks(list(self.blocks)[:first], x, positions, self.arch.remat, **attention_kwargs)
    for i, block in enumerate(list(self.blocks)[first:], start=first):
      x, cache = call(block, x, positions, cache=None if caches is None else caches[i],
                      query_index=output_positions if i == last else None, **attention_kwargs)
      x = sharding.constrain(x, HIDDEN)
      new_caches.append(cache)
    if self.final_norm is not None:
      x = self.final_norm(x)
    return x, (new_caches if caches is not None else None)


# A hidden state's [B, T, d] logical axes: split by batch, whole along the model dimension (models/sharding.py).
HIDDEN = ("batch", "length", None)

# model.remat's policies (jax.checkpoint_policies): what each block keeps for the backward pass; the rest is
# recomputed. 'full' keeps only the block's input. 'dots' keeps the outputs of the weight matmuls (those without
# batch dimensions: the q/k/v, out and MLP projections) and recomputes the attention scores and probabilities,
# [B, N, T, S] per layer, which checkpoint_dots would keep; MaxText's 'minimal' policy. 'offload' keeps the same
# outputs in host memory (jax.memories: 'pinned_host', which CPUs have too) instead of the device's.
REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "offload": jax.checkpoint_policies.offload_dot_with_no_batch_dims("device", "pinned_host"),
}


def _call(block, x, positions, **kwargs):
  return block(x, positions, **kwargs)


def remat_call(remat: str):
  """`call(block, x, positions, **kwargs) -> block(x, positions, **kwargs)`, under nnx.remat with the
  REMAT_POLICIES policy `remat` names ('none': a plain call)."""
  if remat == "none":
    return _call

  def call(block, x, positions, **kwargs):  # only the block and x go through the transform: kwargs hold flags
    return nnx.remat(lambda b, y: b(y, positions, **kwargs), policy=REMAT_POLICIES[remat])(block, x)
  return call


def scan_blocks(blocks: list, x, positions, remat: str = "none", **kwargs):
  """x [B, T, d] through `blocks` in order, as one jax.lax.scan over their states stacked on a new leading
  axis (MaxText's scan_layers): XLA compiles one block's body whatever the depth, and under FSDP each trip
  gathers one block's weights and reduces its gradients. The stacked copy lives only inside the step:
  parameters, checkpoints and converters keep one entry per block. Each block keeps its own dropout stream,
  advanced as in the unrolled loop. The body runs under the REMAT_POLICIES policy `remat`. Raises UserError
  when the blocks differ in structure (Gemma's alternating sliding windows), which only run unrolled."""
  if not blocks:
    return x
  graphdefs, states = zip(*(nnx.split(block) for block in blocks))
  graphdef = graphdefs[0]
  for i, other in enumerate(graphdefs):
    if other != graphdef:
      raise UserError(f"model.scan_layers needs blocks alike in structure, and block {i} differs from block 0 "
                      "(per-layer windows or RoPE bases); set --config.model.scan_layers=False")

  def stack(*variables):  # [L, ...], each layer's slice sharded as the layer's own parameter
    names = variables[0].get_metadata().get("out_sharding")
    value = jnp.stack([v.get_value() for v in variables])
    return variables[0].replace(sharding.constrain(value, (None, *names)) if names else value)
  stacked = jax.tree.map(stack, *states, is_leaf=lambda leaf: isinstance(leaf, nnx.Variable))

  def body(y, state):
    block = nnx.merge(graphdef, state)
    y, _ = block(y, positions, **kwargs)
    return sharding.constrain(y, HIDDEN), nnx.state(block, nnx.RngState)

  if remat != "none":
    body = jax.checkpoint(body, policy=REMAT_POLICIES[remat])
  x, rng_states = jax.lax.scan(body, x, stacked)
  drawing = any(isinstance(m, nnx.Dropout) and m.rate > 0 and not m.deterministic
                for _, m in nnx.iter_graph(blocks[0]))
  for i, block in enumerate(blocks if drawing else ()):  # each dropout stream advanced, as the loop leaves it
    nnx.update(block, jax.tree.map(lambda leaf: leaf[i], rng_states))
  return x


def transformer_flops_per_token(num_layers, embed_dim, mlp_dim, seq_len, vocab_size, *, qkv_dim=None,
                                kv_dim=None, gated=False, training=True, causal=False):
  """FLOPs per token of a transformer (GPT/BERT body, plus an LM head if vocab_size > 0), counted as
  registry.flops_per_example says.

  With a = qkv_dim (num_heads * head_dim, default embed_dim), d = embed_dim, T = seq_len:
    N        = L * (4*d*a + 2*d*mlp) + d*vocab   matmul weights (q, k, v, out; mlp up, down; LM head)
  (grouped-query attention: k and v are d x kv_dim, kv_dim = kv heads * head_dim; a gated MLP has a third
  d x mlp matrix.)
    attn     = 4 * L * T * a                     QK^T and AV: 2*T*a FLOPs each, per token and layer
    forward  = 2*N + attn
    training = 3 * forward = 6*N + 12*L*T*a      (the PaLM paper's formula)
  causal=True halves the attention term (a query needs only the keys before it); leave it False for
  jax.nn.dot_product_attention's XLA path, which computes all T x T scores and masks them.
  """
  a = qkv_dim or embed_dim
  attention = 2 * embed_dim * a + 2 * embed_dim * (kv_dim or a)
  n_matmul = num_layers * (attention + (3 if gated else 2) * embed_dim * mlp_dim) + embed_dim * vocab_size
  attn = 4 * num_layers * seq_len * a * (0.5 if causal else 1.0)
  forward = 2 * n_matmul + attn
  return 3 * forward if training else forward


def transformer_classifier_flops_per_example(num_layers, embed_dim, mlp_dim, seq_len, num_classes, *,
                                             training=True, pooled=False, **shape):
  """Encoder over seq_len tokens + one pooled [d, classes] head (matches bench/common.py); `shape` takes
  transformer_flops_per_token's qkv_dim, kv_dim and gated.

  pooled=True: the last layer computes one position ([CLS], or a decoder's last token; see
  `Transformer(output_positions=)`): its keys and values for all T tokens, and the rest (q, attention over T
  keys, out, MLP) for that position alone.
  """
  per_layer = transformer_flops_per_token(1, embed_dim, mlp_dim, seq_len, 0, training=False, **shape)
  if pooled:
    kv = 4 * embed_dim * (shape.get("kv_dim") or shape.get("qkv_dim") or embed_dim)  # k and v, per token
    body = seq_len * (num_layers - 1) * per_layer + seq_len * kv + (per_layer - kv)
  else:
    body = seq_len * num_layers * per_layer
  forward = body + 2 * embed_dim * num_classes
  return 3 * forward if training else forward
