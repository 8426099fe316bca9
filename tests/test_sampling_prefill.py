"""The shared sampler (generate and serving's completions) fills the cache from the prompt in one decode call:
the same greedy tokens as the uncached model, one sequential step per sampled token whatever the prompt's
length, and a few compiled programs for all prompt lengths."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flaxforge.models import gpt, transformer
from flaxforge.inference import sampling

BYTES = {"type": "bytes", "separator": 0}
CONTEXT = 48  # not a power of two: the buffer and the prefill are capped to it
forward = nnx.jit(lambda model, x: model(x))


def greedy(model, prompt, new, length=CONTEXT):
  """The reference generation loop: the whole [1, length] buffer through the model (no cache) per token;
  causal attention keeps the zeros after the prompt out of the way, and one shape compiles once for every
  prompt length. prompt: a list of ids -> the `new` ids that follow it."""
  buf = np.zeros((1, length), np.int32)
  buf[0, :len(prompt)] = prompt
  for t in range(len(prompt), len(prompt) + new):
    buf[0, t] = int(np.argmax(forward(model, buf)[0, t - 1]))
  return buf[0, len(prompt):len(prompt) + new].tolist()


@pytest.mark.slow  # every prompt length compiled
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_greedy_matches_the_uncached_model_for_every_prompt_length(position):
  arch = transformer.arch_from_config({"size": "tiny", "position": position, "max_len": CONTEXT},
                                      {"vocab_size": 256, "seq_len": CONTEXT})
  model = gpt.GPT(arch, rngs=nnx.Rngs(0))
  model.eval()
  # untrained weights (std 0.02) make a near-bigram model; larger ones make each token depend on the prompt
  nnx.update(model, jax.tree.map(lambda p: p * 8 if p.ndim > 1 else p, nnx.state(model, nnx.Param)))
  sampler = sampling.Sampler(model, BYTES, max_context=CONTEXT)
  prompts = np.random.default_rng(1).integers(1, 256, (CONTEXT,)).tolist()
  for n in (1, 2, 3, 5, 8, 9, 17, 18, 33, 34, 40):  # prefills of 16, 32 and 48 (capped) tokens
    want = greedy(model, prompts[:n], 8)
    assert sampler.sample(prompts[:n], 8, num_samples=2, temperature=0, stop_at_eos=False) == [want] * 2, n


CALLS = []


class Recorder(nnx.Module):
  """A stand-in decoder that appends (tokens, index) to CALLS for every decode call the sampler runs."""

  def init_cache(self, batch, length):
    return jnp.zeros((batch, length), jnp.int32)

  def decode(self, tokens, cache, index):
    jax.debug.callback(lambda i, n=tokens.shape[1]: CALLS.append((n, int(i))), index)
    return jnp.zeros(tokens.shape + (256,)), cache


def test_the_prompt_takes_one_decode_call_and_a_few_programs():
  sampler = sampling.Sampler(Recorder(), BYTES, max_context=128)
  CALLS.clear()
  sampler.sample(list(range(1, 41)), 5, temperature=0, stop_at_eos=False)
  jax.effects_barrier()
  # the 40-token prompt in one call (64 slots; 39 would do), then one step per sampled token, from the last
  # prompt token on
  assert sorted(CALLS) == [(1, 39), (1, 40), (1, 41), (1, 42), (1, 43), (64, 0)]
  before = sampling._sample._cache_size()  # pylint: disable=protected-access
  for n in range(1, 60):  # prefills of 16, 32 and 64 tokens in a buffer of 64
    sampler.sample(list(range(1, n + 1)), 4, temperature=0)
  assert sampling._sample._cache_size() - before <= 3  # pylint: disable=protected-access


def sampled(model, prompt, new, seed, length=CONTEXT):
  """The reference sampling loop at temperature 1 (no top-k, no top-p): the whole buffer through the uncached
  model per token, token i+1 drawn from logits[i] with fold_in(key(seed), i), the key the sampler documents."""
  buf = np.zeros((1, length), np.int32)
  buf[0, :len(prompt)] = prompt
  for t in range(len(prompt), len(prompt) + new):
    key = jax.random.fold_in(jax.random.key(seed), t - 1)
    buf[0, t] = int(jax.random.categorical(key, forward(model, buf)[0, t - 1]))
  return buf[0, len(prompt):len(prompt) + new].tolist()


@pytest.mark.slow  # two prefill sizes compiled
def test_seeded_sampling_matches_token_by_token_decoding():
  """Prefill changes how the prompt reaches the cache, not which tokens a seed draws (BENCHMARKS.md, prefill)."""
  arch = transformer.arch_from_config({"size": "tiny", "position": "rope", "max_len": CONTEXT},
                                      {"vocab_size": 256, "seq_len": CONTEXT})
  model = gpt.GPT(arch, rngs=nnx.Rngs(0))
  model.eval()
  nnx.update(model, jax.tree.map(lambda p: p * 8 if p.ndim > 1 else p, nnx.state(model, nnx.Param)))
  sampler = sampling.Sampler(model, BYTES, max_context=CONTEXT)
  prompts = np.random.default_rng(2).integers(1, 256, (CONTEXT,)).tolist()
  for n in (9, 33):  # prefills of 16 and 48 tokens
    got = sampler.sample(prompts[:n], 10, num_samples=2, temperature=1.0, seed=5, stop_at_eos=False)
    assert got == [sampled(model, prompts[:n], 10, seed) for seed in (5, 6)], n  # sample r draws from seed + r
    assert got[0] != got[1]
