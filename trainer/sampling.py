"""Sampling continuations from a GPT run, for serving: temperature, top-k, top-p and stop sequences.

One jitted loop per buffer size (powers of two): the prompt is fed through the same one-token cached
decode step as the sampled tokens (token i+1 is the prompt's while i+1 < prompt length), so prompts and
`max_tokens` of any length reuse a few compiled programs. `flaxforge.launch.generate` (whole-prompt
prefill, fixed shapes) is the batch tool; this is the per-request one.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flaxforge.core.errors import UserError

MIN_BUFFER = 64


@dataclasses.dataclass
class Completion:
  text: str
  finish_reason: str  # "stop" (a stop sequence ended it) or "length" (max_tokens reached)
  prompt_tokens: int
  completion_tokens: int


def _pick(logits, key, temperature, top_k, top_p):
  """One token id from float32 logits [V]: greedy when temperature <= 0, else sampled among the top_k
  (0 = all) most likely tokens whose cumulative probability first reaches top_p."""
  greedy = jnp.argmax(logits).astype(jnp.int32)
  scaled = logits / jnp.maximum(temperature, 1e-6)
  ordered = jnp.sort(scaled)[::-1]
  kth = jnp.where(top_k > 0, ordered[jnp.clip(top_k - 1, 0, logits.shape[0] - 1)], -jnp.inf)
  probs = jax.nn.softmax(ordered)
  keep = (jnp.cumsum(probs) - probs) < top_p  # the smallest prefix reaching top_p (the first always kept)
  pth = jnp.min(jnp.where(keep, ordered, jnp.inf))
  masked = jnp.where(scaled < jnp.maximum(kth, pth), -jnp.inf, scaled)
  sampled = jax.random.categorical(key, masked).astype(jnp.int32)
  return jnp.where(temperature > 0, sampled, greedy)


@functools.partial(jax.jit, static_argnames=("graphdef", "length"))
def _sample(graphdef, state, buf, prompt_len, total_len, key, temperature, top_k, top_p, *, length):
  model = nnx.merge(graphdef, state)
  cache = model.init_cache(1, length)

  def step(i, carry):
    buf, cache = carry
    logits, cache = model.decode(jax.lax.dynamic_slice_in_dim(buf, i, 1, axis=1), cache, i)
    token = _pick(logits[0, -1], jax.random.fold_in(key, i), temperature, top_k, top_p)
    token = jnp.where(i + 1 < prompt_len, buf[0, i + 1], token)
    return jax.lax.dynamic_update_slice_in_dim(buf, token[None, None], i + 1, axis=1), cache

  return jax.lax.fori_loop(0, total_len - 1, step, (buf, cache))[0]


class Sampler:
  """Text in, text out, for a byte-level GPT (`tokenizer` is the run's assets/tokenizer.json)."""

  def __init__(self, model, tokenizer: dict, max_context: int):
    if tokenizer.get("type") != "bytes":
      raise UserError(f"tokenizer {tokenizer.get('type')!r} is not supported for completions (byte-level only)")
    self.graphdef, self.state = nnx.split(model)
    self.separator, self.max_context = int(tokenizer.get("separator", 0)), max_context

  @classmethod
  def from_workdir(cls, workdir: str, *, step: int | None = None) -> "Sampler":
    from flaxforge.trainer import restore, workdir as workdir_lib  # pylint: disable=g-import-not-at-top
    run = restore.restore(workdir, step=step)
    if run.config.model.name != "gpt":
      raise UserError(f"{workdir} holds a {run.config.model.name!r} model; completions need a gpt run")
    model, _ = nnx.merge(run.structure.eval_graphdef, jax.device_get(run.state))
    arch = model.arch
    context = arch.max_len if arch.position == "learned" else 1 << 16
    return cls(model, workdir_lib.load_asset(run.workdir, "tokenizer"), context)

  def complete(self, prompt: str, *, max_tokens: int = 16, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, stop=(), seed: int = 0) -> Completion:
    """Raises UserError when the prompt plus max_tokens exceed the model's context."""
    ids = list(prompt.encode("utf-8")) or [self.separator]
    total = len(ids) + max_tokens
    if total > self.max_context:
      raise UserError(f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceed the model's context of "
                      f"{self.max_context} tokens; shorten the prompt or lower max_tokens")
    length = max(MIN_BUFFER, 1 << (total - 1).bit_length())
    buf = np.zeros((1, length), np.int32)
    buf[0, :len(ids)] = ids
    out = _sample(self.graphdef, self.state, buf, len(ids), total, jax.random.key(seed), jnp.float32(temperature),
                  jnp.int32(top_k), jnp.float32(top_p), length=length)
    text = bytes(int(t) for t in np.asarray(out)[0, len(ids):total]).decode("utf-8", errors="replace")
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    if cut >= 0:
      return Completion(text[:cut], "stop", len(ids), len(text[:cut].encode("utf-8")))
    return Completion(text, "length", len(ids), max_tokens)
