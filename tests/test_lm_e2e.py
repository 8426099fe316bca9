"""The language-model path as a user runs it: train a tiny byte-level GPT on a text file, then generate."""
import json

import pytest

from conftest import run_module

pytestmark = pytest.mark.slow  # subprocess CLI runs


_run = run_module


def test_tiny_gpt_trains_on_a_text_file_and_generates(tmp_path):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("the cat sat on the mat. " * 400)
  workdir = tmp_path / "run"
  trained = _run("flaxforge.launch.train", "--config=launch/configs/gpt_text.py", f"--workdir={workdir}",
                 f"--config.data.path={corpus}", "--config.data.seq_len=32", "--config.model.size=tiny",
                 "--config.train.num_steps=150", "--config.train.eval_every_steps=75", "--config.train.log_every=25",
                 "--config.optimizer.warmup_steps=10", "--config.train.progress_bar=false")
  result = json.loads(trained.stdout.strip().splitlines()[-1])
  assert result["bits_per_byte"] < 1.0, result  # a repeated sentence is easy to predict: 8 bits at the start
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if r["split"] == "train"]
  assert train[-1]["loss"] < train[0]["loss"] and all("tokens_per_second" in r and "mfu" in r for r in train)
  out = _run("flaxforge.launch.generate", f"--workdir={workdir}", "--prompt=the cat", "--max_new_tokens=25",
             "--temperature=0")
  text = out.stdout.strip()
  assert text.startswith("the cat") and "sat on the mat" in text, text
