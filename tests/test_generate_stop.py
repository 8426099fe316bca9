"""Generation (flaxforge generate and serving's completions, one sampler) stops at the run's end-of-text id:
a Hugging Face tokenizer's end-of-text token, or a byte-level run's separator byte."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
from flax import nnx
from tokenizers import pre_tokenizers

from conftest import run_module
from flaxforge.core.errors import UserError
from flaxforge.data import text
from flaxforge.inference import sampling

BYTES = {"type": "bytes", "separator": 0}


class Script(nnx.Module):
  """A stand-in decoder whose greedy continuation is `script`: at position i its logits favour script[i + 1]
  whatever the tokens, so the test knows exactly what a sampler that ignored end-of-text would emit."""

  def __init__(self, script, vocab_size):
    self.logits = nnx.Param(10.0 * jax.nn.one_hot(jnp.asarray(script[1:] + [1]), vocab_size))

  def init_cache(self, batch, length):
    return jnp.zeros((batch, length), jnp.int32)

  def decode(self, tokens, cache, index):
    return jnp.broadcast_to(self.logits[...][index][None, None], tokens.shape + self.logits.shape[-1:]), cache


def _byte_sampler(script: bytes, context: int = 128):
  return sampling.Sampler(Script(list(script), 256), BYTES, max_context=context)


def test_a_byte_level_completion_ends_at_the_separator():
  sampler = _byte_sampler(b"the cat sat.\0the dog")
  done = sampler.complete("the cat", max_tokens=12, temperature=0)
  assert (done.text, done.finish_reason, done.prompt_tokens, done.completion_tokens) == (" sat.", "stop", 7, 5)
  assert sampler.complete("the cat", max_tokens=3, temperature=0).finish_reason == "length"
  ids = list(b"the cat")
  assert sampler.sample(ids, 12, num_samples=2, temperature=0) == [list(b" sat.")] * 2
  assert sampler.sample(ids, 12, temperature=0, stop_at_eos=False) == [list(b" sat.\0the do")]


def test_an_empty_prompt_starts_from_the_separator_which_is_not_returned():
  sampler = _byte_sampler(b"\0the cat sat.\0the dog")
  done = sampler.complete("", max_tokens=20, temperature=0)
  assert (done.text, done.finish_reason, done.prompt_tokens, done.completion_tokens) == ("the cat sat.", "stop", 0, 12)
  assert sampler.sample([], 5, temperature=0) == [list(b"the c")]


@pytest.mark.parametrize("prompt,new,shown,fix", [
    (b"a", 100, "the prompt (1 byte) plus max_tokens=100 exceed the model's context of 16 tokens; use max_tokens=15 "
                "or less (or a shorter prompt)", (1, 15)),
    (b"", 16, "the prompt (0 bytes) plus max_tokens=16 exceed", (0, 15)),  # its start token takes a place
    (b"x" * 30, 0, "the prompt (30 bytes) exceeds the model's context of 16 tokens; shorten it to at most 16 bytes",
     (16, 0)),
    (b"x" * 30, 4, "the prompt (30 bytes) exceeds the model's context of 16 tokens; shorten it to at most 12 bytes "
                   "to leave room for max_tokens=4", (12, 4)),
    (b"x" * 16, 1, "the prompt (16 bytes) fills the model's context of 16 tokens; shorten it to at most 15 bytes",
     (15, 1)),
], ids=["too-many-new", "empty", "prompt-alone", "prompt-and-new", "prompt-fills"])
def test_a_prompt_past_the_context_is_told_the_fix(prompt, new, shown, fix):
  sampler = _byte_sampler(b"the cat", context=16)
  with pytest.raises(UserError) as refused:
    sampler.complete(prompt.decode(), max_tokens=new, temperature=0)
  assert str(refused.value).startswith(shown)
  length, tokens = fix
  sampler.check([1] * length, tokens)  # the fix fits, and it is the most that does
  with pytest.raises(UserError):
    sampler.check([1] * length, tokens + 1)
  if length:
    with pytest.raises(UserError):
      sampler.check([1] * (length + 1), tokens)


def test_the_stop_compiles_once_for_prompts_and_settings_within_a_buffer():
  sampler = _byte_sampler(b"the cat sat.\0the dog")
  sampler.complete("the cat", max_tokens=12, temperature=0)
  before = sampling._sample._cache_size()  # pylint: disable=protected-access
  sampler.complete("the", max_tokens=5, temperature=0.7, top_k=3, seed=4)
  sampler.sample(list(b"the c"), 9, temperature=0, stop_at_eos=False)
  assert sampling._sample._cache_size() == before  # pylint: disable=protected-access


def test_a_hugging_face_tokenizer_ends_at_its_end_of_text_token(tmp_path):
  tok = tokenizers.Tokenizer(tokenizers.models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  tok.train_from_iterator(["The old sailor ts a b. and the sea"] * 5, tokenizers.trainers.BpeTrainer(
      vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.save(os.path.join(tmp_path, "tokenizer.json"))
  (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
  stored = text.PretrainedEncoder.fit((), tokenizer_path=str(tmp_path), seq_len=64).to_json()
  encode = tok.encode
  prompt, completion = encode("The old sailor").ids, encode("ts a b.").ids
  eos = tok.token_to_id("<|endoftext|>")
  script = prompt + completion + [eos] + encode(".........").ids
  sampler = sampling.Sampler(Script(script, tok.get_vocab_size()), stored, max_context=64)
  assert sampler.end_id == eos
  new = sampler.sample(prompt, 20, temperature=0)[0]
  assert new == completion and sampler.decode(prompt + new) == "The old sailorts a b."
  assert sampler.complete("The old sailor", max_tokens=20, temperature=0).text == "ts a b."


@pytest.mark.slow  # subprocess CLI runs
def test_generate_stops_at_the_end_of_a_document_and_takes_best(tiny_gpt_run):
  """The session's tiny GPT (conftest.py tiny_gpt_run) was trained on one-sentence documents."""
  generate = lambda *flags: run_module("flaxforge.launch.generate", f"--workdir={tiny_gpt_run.workdir}",
                                       "--prompt=the cat", "--max_new_tokens=24", "--temperature=0", *flags).stdout
  assert generate() == generate("--best") == "the cat sat on the mat.\n\n"
  assert generate("--nostop_at_eos").startswith("the cat sat on the mat.\0the cat")
