"""Decoder-only causal language model, with a key-value cache for generation (flaxforge's `Sampler` samples
from it), and a decoder as a classifier."""
import jax.numpy as jnp
from flax import nnx

from flaxforge.core.errors import UserError
from flaxforge.models import fields, segments
from flaxforge.models.dropout import Dropout
from flaxforge.models.initializers import normal
from flaxforge.models.transformer import (Arch, Transformer, arch_from_config,
                                          transformer_classifier_flops_per_example, transformer_flops_per_token)


class GPT(nnx.Module):

  def __init__(self, arch: Arch, *, tie_embeddings=True, rngs):
    self.arch = arch
    self.transformer = Transformer(arch, rngs=rngs)
    self.lm_head = (nnx.Linear(arch.embed_dim, arch.padded_vocab, use_bias=False, dtype=arch.dtype,
                               param_dtype=arch.param_dtype, kernel_init=normal(0.02, ("embed", "vocab")), rngs=rngs)
                    if not tie_embeddings else None)

  def _logits(self, h):
    logits = self.transformer.embed.attend(h) if self.lm_head is None else self.lm_head(h)
    logits = logits[..., :self.arch.vocab_size].astype(jnp.float32)
    cap = self.arch.logit_softcap  # Gemma 2's final_logit_softcapping
    return cap * jnp.tanh(logits / cap) if cap else logits

  def __call__(self, tokens, positions=None, segment_ids=None):
    """tokens int [B, T] -> float32 logits [B, T, vocab]; position t sees tokens 0..t only. Packed rows
    (data/packing.py) give segment_ids int [B, T] (t then sees only the tokens of its own example) and
    positions int [B, T] (restarting at each example)."""
    if segment_ids is None:
      h, _ = self.transformer(tokens, jnp.arange(tokens.shape[1]) if positions is None else positions, is_causal=True)
    else:
      h, _ = self.transformer(tokens, positions, mask=segments.attention_mask(segment_ids))
    return self._logits(h)

  def init_cache(self, batch, max_len, dtype=None):
    """An empty cache: per layer, {'k', 'v'} zeros of [batch, max_len, key/value heads, head_dim]."""
    a = self.arch
    if a.position == "learned" and max_len > a.max_len:
      raise UserError(f"cache length {max_len} exceeds model.max_len {a.max_len} (learned positions)")
    shape = (batch, max_len, a.kv_heads, a.head_dim)
    return [{"k": jnp.zeros(shape, dtype or a.dtype), "v": jnp.zeros(shape, dtype or a.dtype)}
            for _ in range(a.num_layers)]

  def decode(self, tokens, cache, index):
    """tokens int [B, S] at positions [index, index + S) -> (float32 logits [B, S, vocab], new cache).

    Prefill with the whole prompt at index 0, then feed one token at a time; `index` may be traced.
    """
    positions = index + jnp.arange(tokens.shape[1])
    mask = jnp.arange(cache[0]["k"].shape[1])[None, :] <= positions[:, None]  # [S, L]
    h, cache = self.transformer(tokens, positions, caches=cache, index=index, mask=mask[None, None])
    return self._logits(h), cache


class GPTClassifier(nnx.Module):
  """A decoder as a classifier: the hidden state of each row's last non-padding token (padding on the right,
  id `pad_id`) through a new linear head without a bias, as transformers' `*ForSequenceClassification` score
  it (so a classifier on a Llama, Qwen2 or GPT-2 exports as one). Its body has GPT's parameter paths, so
  pretrained weights load."""
  pool = "last"  # the pooling, as an encoder's model.pool names its own

  def __init__(self, arch: Arch, num_classes: int, *, pad_id: int = 0, rngs):
    self.arch, self.pad_id = arch, pad_id
    self.transformer = Transformer(arch, rngs=rngs)
    self.dropout = Dropout(arch.dropout, rngs=rngs)
    self.head = nnx.Linear(arch.embed_dim, num_classes, use_bias=False, kernel_init=normal(0.02, ("embed", "classes")),
                           rngs=rngs)

  def __call__(self, tokens):
    """tokens int [B, T] -> float32 logits [B, classes]."""
    last = jnp.maximum((tokens != self.pad_id).sum(1) - 1, 0)
    # the last block computes each row's last token alone
    h, _ = self.transformer(tokens, jnp.arange(tokens.shape[1]), is_causal=True, output_positions=last[:, None])
    pooled = h[:, 0].astype(jnp.float32)
    return self.head(self.dropout(pooled))


def flops_per_example(cfg, info, pretrained=None) -> float:
  a = arch_from_config(cfg, info, pretrained)
  if info.get("task") == "classification":  # the body over seq_len tokens, the last block for one position
    return transformer_classifier_flops_per_example(a.num_layers, a.embed_dim, a.mlp_dim, int(info["seq_len"]),
                                                    int(info["num_classes"]), pooled=True, **a.flops_shape())
  per_token = transformer_flops_per_token(a.num_layers, a.embed_dim, a.mlp_dim, int(info["seq_len"]),
                                          a.padded_vocab, **a.flops_shape())
  return per_token * int(info["seq_len"])


def from_config(cfg, info, *, rngs, pretrained=None) -> GPT | GPTClassifier:
  """A language model, or for classification data a `GPTClassifier`. Given `pretrained` (a models.hf.Pretrained),
  that Hugging Face directory's architecture and head tying (its weights are loaded separately, by
  models.hf.load_params)."""
  arch = arch_from_config(cfg, info, pretrained)
  if info.get("task") == "classification":
    return GPTClassifier(arch, int(info["num_classes"]), pad_id=int(info.get("pad_id", 0)), rngs=rngs)
  tie = pretrained.tie_embeddings if pretrained is not None else fields.Decoder.read(cfg).tie_embeddings
  return GPT(arch, tie_embeddings=tie, rngs=rngs)
