"""trainer/loop.py through `train(config, workdir)`: a time limit ends a run early and the same command
continues it; bfloat16 compute keeps float32 parameters and optimizer state."""
import json

import jax
import numpy as np

from conftest import checkpoint_arrays
from flaxforge.launch.configs import gpt_text, tiny
from flaxforge.trainer import loop


def _records(workdir, split="train"):
  return [r for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines()) if r["split"] == split]


def test_time_limit_stops_at_a_log_step_and_the_rerun_continues(tmp_path, capsys):
  config = tiny.get_config()
  config.train.time_limit_minutes = 1e-5  # spent by the first logging interval (10 steps)
  first = loop.train(config, str(tmp_path), devices=jax.devices()[:1])
  assert "time limit of 1e-05 minutes reached after step 10 of 40" in capsys.readouterr().out
  assert checkpoint_arrays(tmp_path)[0] == 10 and "accuracy" in first  # checkpointed, then tested
  loop.train(config, str(tmp_path), devices=jax.devices()[:1])
  assert "resumed from the checkpoint at step 10" in capsys.readouterr().out
  assert checkpoint_arrays(tmp_path)[0] == 20
  assert [r["step"] for r in _records(tmp_path)] == [10, 20]


def _lm(tmp_path, dtype):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("the cat sat on the mat. " * 200)
  config = gpt_text.get_config()
  config.data.path, config.data.data_dir, config.data.seq_len = str(corpus), str(tmp_path / "tfds"), 32
  config.model.size, config.model.dtype = "tiny", dtype
  config.train.num_steps = config.train.eval_every_steps = 10
  config.train.log_every, config.optimizer.warmup_steps = 5, 2
  config.train.progress_bar = False
  workdir = tmp_path / dtype
  return loop.train(config, str(workdir), devices=jax.devices()[:1]), workdir


def test_bfloat16_compute_keeps_float32_parameters_and_optimizer_state(tmp_path):
  bf16, workdir = _lm(tmp_path, "bfloat16")
  _, arrays = checkpoint_arrays(workdir)
  floats = [a for a in arrays if np.issubdtype(a.dtype, np.floating) or a.dtype.name == "bfloat16"]
  assert len(floats) > 10 and all(a.dtype == np.float32 for a in floats), {a.dtype.name for a in floats}
  train = _records(workdir)
  assert len(train) == 2 and train[1]["loss"] < train[0]["loss"] and np.isfinite(bf16["loss"])  # it learns
