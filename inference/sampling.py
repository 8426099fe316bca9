"""Sampling continuations from a GPT run, for `flaxforge generate` and serving: temperature, top-k, top-p,
the tokenizer's end-of-text id and stop sequences.

One jitted program per (rows, buffer size, prefill size), all powers of two: one decode call fills the
cache from the prompt (a prefill of at least MIN_PREFILL tokens, so short prompts share one program), then a
loop of one-token cached decode steps samples from the prompt's last token on. Prompts, `max_tokens` and the
end-of-text id thus reuse a few compiled programs, and a long prompt costs one parallel call rather than one
sequential step per token. The loop ends early once every row has sampled the end-of-text id.

A run's context (`context`: the positions it was trained on) bounds the prompt plus the new tokens, for
generate and serving alike; `Sampler.check` refuses more in one line that names the fix.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flaxforge.core.errors import UserError
from flaxforge.data import chat, lm_text
from flaxforge.data.hf_tokenizer import HFTokenizer
from flaxforge.trainer import restore, workdir as workdir_lib

MIN_BUFFER = 64
MIN_PREFILL = 16


@dataclasses.dataclass
class Completion:
  text: str
  finish_reason: str  # "stop" (end-of-text or a stop sequence ended it) or "length" (max_tokens reached)
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


@functools.partial(jax.jit, static_argnames=("graphdef", "length", "prefill"))
def _sample(graphdef, state, buf, prompt_len, total_len, keys, temperature, top_k, top_p, end_ids, *, length,
            prefill):
  """buf int32 [B, length] (the prompt in each row's first prompt_len) -> buf with tokens up to total_len.
  Row b samples with keys[b]; the loop ends early once every row has sampled one of end_ids int32 [K]
  (-1: none).
  `prefill` (>= prompt_len - 1, <= length) buffer tokens are decoded at once; the loop samples from position
  prompt_len - 1 on (recomputing that one), so step i draws with fold_in(keys[b], i)."""
  model = nnx.merge(graphdef, state)
  # The cache slots from prompt_len on hold whatever the buffer had there, but each is rewritten by the loop's
  # step at that position before any later position attends to it (decode is causal).
  _, cache = model.decode(buf[:, :prefill], model.init_cache(buf.shape[0], length), 0)
  pick = jax.vmap(_pick, in_axes=(0, 0, None, None, None))

  def step(carry):
    i, buf, cache, ended = carry
    logits, cache = model.decode(jax.lax.dynamic_slice_in_dim(buf, i, 1, axis=1), cache, i)
    token = pick(logits[:, -1], jax.vmap(jax.random.fold_in, (0, None))(keys, i), temperature, top_k, top_p)
    ended = ended | jnp.any(token[:, None] == end_ids, axis=-1)
    return i + 1, jax.lax.dynamic_update_slice_in_dim(buf, token[:, None], i + 1, axis=1), cache, ended

  going = lambda carry: (carry[0] < total_len - 1) & ~jnp.all(carry[3])
  ended = jnp.zeros(buf.shape[:1], bool)
  return jax.lax.while_loop(going, step, (prompt_len - 1, buf, cache, ended))[1]


def context(config, info: dict, arch) -> int:
  """The context a GPT run can honestly use, the one limit of generate and serving: the positions it was
  trained on, data.seq_len, or a pretrained model's if more (its max_position_embeddings, GPT-2's
  n_positions: arch.max_len); for learned positions never past the table. Rotary positions would run on,
  but past the trained ones the text degrades."""
  trained = int(info["seq_len"])
  if config.model.get("pretrained", None):
    trained = max(trained, arch.max_len)
  return min(trained, arch.max_len) if arch.position == "learned" else trained


class Sampler:
  """Text in, text out, for a GPT run (`tokenizer`: its assets/tokenizer.json, bytes or a Hugging Face
  tokenizer). Its end-of-text id is the one the run's data pipeline put after each document or completion:
  the tokenizer's end-of-text (padding) id, or for bytes the separator byte. `max_context` bounds a prompt
  plus its new tokens (a run's: `context`). Raises UserError for another tokenizer type."""

  def __init__(self, model, tokenizer: dict, max_context: int, chat_template: dict | None = None):
    self.encode, self.decode, self.end_id = lm_text.codec(tokenizer)
    # A chat run's template (data/chat.py; its stored asset): `chat` renders messages and stops at the
    # template's end-of-turn token.
    self.chat_template = None if chat_template is None else chat.ChatTemplate.from_json(
        chat_template, HFTokenizer.from_json(tokenizer["tokenizer"]).tokenizer)
    self.unit = "byte" if tokenizer.get("type") == "bytes" else "token"  # what a prompt's length counts
    self.graphdef, self.state = nnx.split(model)
    self.max_context = max_context

  @classmethod
  def from_workdir(cls, workdir: str, *, step: int | None = None, best: bool = False) -> "Sampler":
    """The run's checkpoint (`step`, default the latest; `best`; its model alone) with its tokenizer and
    `context`."""
    run = restore.restore(workdir, step=step, best=best, model_only=True)
    if run.config.model.name != "gpt" or run.info.get("task") != "lm":  # a gpt classifier has no LM head
      what = f"{run.info.get('task') or 'classification'} {run.config.model.name!r}"
      raise UserError(f"{workdir} holds a {what} model; generating text needs a gpt language-model run "
                      "(--config=gpt_text or finetune_lm)")
    model, _ = nnx.merge(run.structure.eval_graphdef, jax.device_get(run.state))
    chat_template = (workdir_lib.load_asset(run.workdir, "chat_template")
                     if (run.workdir / "assets" / "chat_template.json").exists() else None)
    return cls(model, workdir_lib.load_asset(run.workdir, "tokenizer"), context(run.config, run.info, model.arch),
               chat_template)

  def room(self, ids) -> int:
    """How many new tokens fit in the context after prompt `ids` (an empty prompt takes one position: its
    start token)."""
    return self.max_context - max(len(ids), 1)

  def check(self, ids, max_tokens: int, name: str = "max_tokens"):
    """Raises UserError, naming the fix (`name`: the option that set max_tokens), unless prompt `ids` and
    max_tokens new tokens fit in the context."""
    room, limit = self.room(ids), self.max_context
    if max_tokens <= room:
      return
    count = lambda n: f"{n} {self.unit}{'' if n == 1 else 's'}"
    if room > 0:
      raise UserError(f"the prompt ({count(len(ids))}) plus {name}={max_tokens} exceed the model's context of "
                      f"{limit} tokens; use {name}={room} or less (or a shorter prompt)")
    fit = limit - max_tokens if max_tokens < limit else limit - 1
    why = f" to leave room for {name}={max_tokens}" if 1 < max_tokens < limit else ""
    raise UserError(f"the prompt ({count(len(ids))}) {'fills' if room == 0 else 'exceeds'} the model's context "
                    f"of {limit} tokens; shorten it to at most {count(fit)}{why}")

  def sample(self, prompt_ids, max_tokens: int, *, num_samples: int = 1, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, seed: int = 0, stop_at_eos: bool = True, stop_ids=None) -> list[list[int]]:
    """Continuations of prompt_ids (a list of ids that `check` passed with max_tokens; an empty one starts
    from the end-of-text id, as a document does): num_samples lists of at most max_tokens new ids; with
    stop_at_eos each ends before the first end-of-text id (or of `stop_ids`, e.g. a chat template's
    end-of-turn token) it sampled. Sample r draws from seed + r (greedy when temperature <= 0)."""
    stops = list(stop_ids or (self.end_id,)) if stop_at_eos else [-1]
    prompt_ids = list(prompt_ids) or [self.end_id]
    total = len(prompt_ids) + max_tokens
    length = min(max(MIN_BUFFER, 1 << (total - 1).bit_length()), self.max_context)
    buf = np.zeros((num_samples, length), np.int32)
    buf[:, :len(prompt_ids)] = prompt_ids
    prefill = min(max(MIN_PREFILL, 1 << (len(prompt_ids) - 2).bit_length()), length)  # a power of two >= len - 1
    keys = jnp.stack([jax.random.key(seed + r) for r in range(num_samples)])
    out = _sample(self.graphdef, self.state, buf, jnp.int32(len(prompt_ids)), total, keys, jnp.float32(temperature),
                  jnp.int32(top_k), jnp.float32(top_p), jnp.asarray(stops, jnp.int32), length=length,
                  prefill=prefill)
    rows = np.asarray(out)[:, len(prompt_ids):total].tolist()
    return [row[:min((row.index(i) for i in stops if i in row), default=len(row))] for row in rows]

  def complete(self, prompt: str, *, max_tokens: int = 16, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, stop=(), seed: int = 0) -> Completion:
    """Raises UserError when the prompt plus max_tokens exceed the model's context (`check`)."""
    return self._complete(self.encode(prompt), None, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                          top_p=top_p, stop=stop, seed=seed)

  def chat(self, messages, **options) -> Completion:
    """The assistant's next turn after `messages` (OpenAI / Hugging Face format), through the run's chat
    template, ended by its end-of-turn token; `options` as `complete`'s. UserError for a run without a chat
    template, bad messages (data/chat.py) or a conversation past the context."""
    if self.chat_template is None:
      raise UserError("this run has no chat template (it was not trained on chat rows); use completions with a "
                      "plain prompt, or fine-tune on {\"messages\"} rows with --config=finetune_lm")
    ids = self.chat_template.prompt_ids(messages).tolist()
    return self._complete(ids, self.chat_template.stop_ids(), **options)

  def _complete(self, ids, stop_ids, *, max_tokens: int = 16, temperature: float = 1.0, top_k: int = 0,
                top_p: float = 1.0, stop=(), seed: int = 0) -> Completion:
    self.check(ids, max_tokens)
    new = self.sample(ids, max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                      stop_ids=stop_ids)[0]
    text = self.decode(new)
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    if cut >= 0:
      return Completion(text[:cut], "stop", len(ids), len(self.encode(text[:cut])))
    return Completion(text, "stop" if len(new) < max_tokens else "length", len(ids), len(new))
