"""The language-model path as a user runs it: a tiny byte-level GPT trained on a file of documents (the session's
shared run, conftest.py tiny_gpt_run), then generate."""
import json

import pytest

from conftest import flaxforge

pytestmark = pytest.mark.slow  # subprocess CLI runs


def test_tiny_gpt_trains_on_a_text_file_and_generates(tiny_gpt_run):
  result = json.loads(tiny_gpt_run.trained.stdout.strip().splitlines()[-1])
  assert result["bits_per_byte"] < 1.0, result  # a repeated sentence is easy to predict: 8 bits at the start
  records = [json.loads(line) for line in (tiny_gpt_run.workdir / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if r["split"] == "train"]
  assert len(train) == 6 and train[-1]["loss"] < train[0]["loss"]
  assert all("tokens_per_second" in r for r in train)
  # MFU is a share of the peak the record names: a peak measured too low (a loaded start-up) once gave 1.93.
  assert all(0 < r["mfu"] <= 1 and r["peak_flops"] > 0 and "matmul" in r["peak_source"] for r in train), train
  out = flaxforge("generate", "--workdir=run", "--prompt=the cat", "--max_new_tokens=25", "--temperature=0",
                  cwd=tiny_gpt_run.folder)
  assert out.returncode == 0, out.stderr[-2000:]
  text = out.stdout.strip()
  assert text.startswith("the cat") and "sat on the mat" in text, text
