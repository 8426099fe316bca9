"""Decoder-only causal language model, with a key-value cache for generation."""
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from flaxforge.models.dropout import Dropout
from flaxforge.models.transformer import (Arch, Transformer, arch_from_config, normal,
                                          transformer_classifier_flops_per_example, transformer_flops_per_token,
                                          zeros)
from flaxforge.core.errors import UserError


class GPT(nnx.Module):

  def __init__(self, arch: Arch, *, tie_embeddings=True, rngs):
    self.arch = arch
    self.transformer = Transformer(arch, rngs=rngs)
    self.lm_head = (nnx.Linear(arch.embed_dim, arch.padded_vocab, use_bias=False, dtype=arch.dtype,
                               kernel_init=normal(0.02, ("embed", "vocab")), rngs=rngs)
                    if not tie_embeddings else None)

  def _logits(self, h):
    logits = self.transformer.embed.attend(h) if self.lm_head is None else self.lm_head(h)
    return logits[..., :self.arch.vocab_size].astype(jnp.float32)

  def __call__(self, tokens):
    """tokens int [B, T] -> float32 logits [B, T, vocab]; position t sees tokens 0..t only."""
    h, _ = self.transformer(tokens, jnp.arange(tokens.shape[1]), is_causal=True)
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
  id `pad_id`) through a new linear head. Its body has GPT's parameter paths, so pretrained weights load."""

  def __init__(self, arch: Arch, num_classes: int, *, pad_id: int = 0, rngs):
    self.arch, self.pad_id = arch, pad_id
    self.transformer = Transformer(arch, rngs=rngs)
    self.dropout = Dropout(arch.dropout, rngs=rngs)
    self.head = nnx.Linear(arch.embed_dim, num_classes, kernel_init=normal(0.02, ("embed", "classes")),
                           bias_init=zeros(("classes",)), rngs=rngs)

  def __call__(self, tokens):
    """tokens int [B, T] -> float32 logits [B, classes]."""
    last = jnp.maximum((tokens != self.pad_id).sum(1) - 1, 0)
    # the last block computes each row's last token alone
    h, _ = self.transformer(tokens, jnp.arange(tokens.shape[1]), is_causal=True, output_positions=last[:, None])
    pooled = h[:, 0].astype(jnp.float32)
    return self.head(self.dropout(pooled))


def flops_per_example(cfg, info) -> float:
  a = arch_from_config(cfg, info)
  if info.get("task") == "classification":  # the body over seq_len tokens, the last block for one position
    return transformer_classifier_flops_per_example(a.num_layers, a.embed_dim, a.mlp_dim, int(info["seq_len"]),
                                                    int(info["num_classes"]), pooled=True, **a.flops_shape())
  per_token = transformer_flops_per_token(a.num_layers, a.embed_dim, a.mlp_dim, a.max_len, a.padded_vocab,
                                          **a.flops_shape())
  return per_token * int(info["seq_len"])


def from_config(cfg, info, *, rngs) -> GPT | GPTClassifier:
  """A language model, or for classification data a `GPTClassifier`. With cfg.pretrained, the Hugging Face
  directory's architecture (its weights are loaded separately, by models.hf.load_params)."""
  if info.get("task") == "classification":
    return GPTClassifier(arch_from_config(cfg, info), int(info["num_classes"]), pad_id=int(info.get("pad_id", 0)),
                         rngs=rngs)
  if cfg.get("pretrained", None):
    from flaxforge.models import hf  # pylint: disable=import-outside-toplevel (hf imports this module)
    tie = hf.read_config(cfg.get("pretrained")).tie_embeddings
  else:
    tie = bool(cfg.get("tie_embeddings", True))
  return GPT(arch_from_config(cfg, info), tie_embeddings=tie, rngs=rngs)


def _sample(logits, key, temperature, top_k, greedy):
  if greedy:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits / temperature
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "top_k", "greedy", "use_cache"))
def _generate(graphdef, state, prompt, rng, temperature, *, max_new_tokens, top_k, greedy, use_cache):
  model = nnx.merge(graphdef, state)
  model.eval()  # this is a copy: the caller's model keeps its mode
  batch, plen = prompt.shape
  buf = jnp.zeros((batch, plen + max_new_tokens), jnp.int32).at[:, :plen].set(prompt)

  def put(buf, i, logits):  # sample new token i (absolute position plen + i) from logits [B, V]
    tok = _sample(logits, jax.random.fold_in(rng, i), temperature, top_k, greedy)
    return jax.lax.dynamic_update_slice_in_dim(buf, tok[:, None], plen + i, axis=1)

  if not use_cache:  # rerun the whole buffer each step; causality keeps the empty tail out of the way
    step = lambda i, buf: put(buf, i, model(buf)[:, plen + i - 1])
    return jax.lax.fori_loop(0, max_new_tokens, step, buf)

  logits, cache = model.decode(prompt, model.init_cache(batch, buf.shape[1]), 0)
  buf = put(buf, 0, logits[:, -1])

  def step(i, carry):
    buf, cache = carry
    pos = plen + i - 1
    logits, cache = model.decode(jax.lax.dynamic_slice_in_dim(buf, pos, 1, axis=1), cache, pos)
    return put(buf, i, logits[:, -1]), cache

  return jax.lax.fori_loop(1, max_new_tokens, step, (buf, cache))[0]


def generate(model: GPT, prompt_ids, max_new_tokens, temperature=1.0, top_k=0, rng=None, use_cache=True):
  """Continue prompts: prompt_ids int [B, P] (or [P]; every row the same length, P >= 1).

  Returns int32 [B, P + max_new_tokens], prompt included. temperature <= 0 is greedy (argmax);
  top_k > 0 samples among the k most likely tokens. Runs as one jitted loop (compiled once per shape).
  """
  prompt = jnp.asarray(prompt_ids, jnp.int32)
  prompt = prompt[None] if prompt.ndim == 1 else prompt
  if max_new_tokens <= 0:
    return prompt
  if model.arch.position == "learned" and prompt.shape[1] + max_new_tokens > model.arch.max_len:
    raise UserError(f"prompt ({prompt.shape[1]}) + new tokens ({max_new_tokens}) exceed model.max_len "
                    f"{model.arch.max_len} (learned positions)")
  greedy = temperature is None or temperature <= 0
  graphdef, state = nnx.split(model)
  return _generate(graphdef, state, prompt, jax.random.key(0) if rng is None else rng,
                   jnp.float32(1.0 if greedy else temperature), max_new_tokens=int(max_new_tokens),
                   top_k=int(top_k or 0), greedy=greedy, use_cache=use_cache)
