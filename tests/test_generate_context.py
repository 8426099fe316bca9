"""One context for `flaxforge generate` and serving's completions: the positions the run was trained on.
A byte-level GPT trained on windows of 32 (rotary positions, which would run on; the session's shared run,
conftest.py tiny_gpt_run) refuses more in both, with the same numbers; generate's default length fits the
context, and an empty prompt's start byte is not printed.
"""
import dataclasses
import re

import ml_collections
import pytest

from flaxforge.models import transformer
from flaxforge.serving import server
from flaxforge.inference import sampling
from conftest import flaxforge, one_line
from test_serving_http import running


@pytest.fixture
def run(tiny_gpt_run):
  return tiny_gpt_run.folder


def test_the_context_is_the_positions_the_run_was_trained_on():
  rope = transformer.arch_from_config({"size": "tiny", "position": "rope"}, {"vocab_size": 256, "seq_len": 64})
  config = lambda pretrained="": ml_collections.ConfigDict({"model": {"pretrained": pretrained}})
  assert sampling.context(config(), {"seq_len": 64}, rope) == 64
  gpt2 = dataclasses.replace(rope, position="learned", max_len=1024)  # a fine-tune keeps the pretrained positions
  assert sampling.context(config("gpt2"), {"seq_len": 128}, gpt2) == 1024
  llama = dataclasses.replace(rope, max_len=2048)
  assert sampling.context(config("llama"), {"seq_len": 128}, llama) == 2048
  assert sampling.context(config("llama"), {"seq_len": 4096}, llama) == 4096  # fine-tuned on longer windows
  assert sampling.context(config(), {"seq_len": 64}, dataclasses.replace(gpt2, max_len=128)) == 64


@pytest.mark.slow  # subprocess CLI runs
def test_generate_and_serving_refuse_the_same_length(run):
  sampler = sampling.Sampler.from_workdir(str(run / "run"))
  assert sampler.max_context == 32
  with running(server.make_app(sampler=sampler, name="gpt")) as client:
    post = lambda **body: client.post("/v1/completions", json={"temperature": 0, **body})
    past = post(prompt="the cat", max_tokens=150)
    assert past.status_code == 400 and past.json()["error"]["message"] == (
        "the prompt (7 bytes) plus max_tokens=150 exceed the model's context of 32 tokens; use max_tokens=25 or "
        "less (or a shorter prompt)")
    long = post(prompt="x" * 200)
    assert long.status_code == 400 and long.json()["error"]["message"] == (
        "the prompt (200 bytes) exceeds the model's context of 32 tokens; shorten it to at most 16 bytes to leave "
        "room for max_tokens=16")
    fits = post(prompt="the cat", max_tokens=25)  # 7 + 25 = the context: accepted (the run's documents end sooner)
    assert fits.status_code == 200 and fits.json()["usage"]["prompt_tokens"] == 7, fits.text
    empty = post(prompt="", max_tokens=8).json()
    assert empty["usage"]["prompt_tokens"] == 0 and "\0" not in empty["choices"][0]["text"]
  assert ("the prompt (7 bytes) plus --max_new_tokens=150 exceed the model's context of 32 tokens; use "
          "--max_new_tokens=25 or less") in one_line(flaxforge("generate", "--workdir=run", "--prompt=the cat",
                                                               "--max_new_tokens=150", cwd=run))
  assert one_line(flaxforge("generate", "--workdir=run", "--prompt=" + "x" * 300, "--max_new_tokens=0", cwd=run)) == (
      "error: the prompt (300 bytes) exceeds the model's context of 32 tokens; shorten it to at most 32 bytes")


@pytest.mark.slow  # subprocess CLI runs
def test_by_default_generate_fills_the_context_and_prints_no_start_byte(run):
  out = flaxforge("generate", "--workdir=run", "--prompt=", "--temperature=0", "--nostop_at_eos", cwd=run)
  assert out.returncode == 0, out.stderr[-2000:]
  sampler = sampling.Sampler.from_workdir(str(run / "run"))
  new = sampler.sample([], 31, temperature=0, stop_at_eos=False)[0]  # the start byte takes the 32nd position
  assert len(new) == 31 and out.stdout == sampler.decode(new) + "\n\n" and not out.stdout.startswith("\0")


@pytest.mark.slow  # subprocess CLI runs
def test_generate_help_shows_its_usage_lines_whole(tmp_path):
  out = flaxforge("generate", "--help", cwd=tmp_path)
  usage = out.stdout.split("\nflags:")[0]
  assert out.returncode == 0 and "flaxforge generate --workdir=" in usage
  assert not re.search(r"\S {2,}\S", usage), usage  # no line joined to the next by a backslash
