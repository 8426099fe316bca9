"""trainer/loop.py: the step loop never syncs implicitly, each train record carries the learning rate, a
rerun of a finished run marks its test record, a restore uses the run's own mesh, a time limit ends a run
early and the same command continues it, and bfloat16 compute keeps float32 parameters and optimizer state."""
import json

import jax
import numpy as np
import optax
import pytest

from conftest import checkpoint_arrays
from flaxforge.core.errors import UserError
from flaxforge.launch.configs import gpt_text, tiny
from flaxforge.trainer import feed as feed_lib
from flaxforge.trainer import loop, restore

pytestmark = pytest.mark.slow  # whole trainings


def _records(workdir, split="train"):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [r for r in map(json.loads, lines) if r["split"] == split]


@pytest.mark.parametrize("on_device", ["yes", "no"])
def test_an_implicit_transfer_inside_the_step_loop_is_an_error(tmp_path, monkeypatch, on_device):
  """Both feed paths hand the step device arrays; a host array slipped in (an implicit transfer, i.e. a
  hidden sync point) must stop the loop instead of slowing it silently."""
  real = feed_lib.batches

  def host_batches(*args, **kwargs):
    feed = real(*args, **kwargs)
    feed.items = (({k: np.asarray(v) for k, v in b.items()}, s, d, n) for b, s, d, n in feed.items)
    return feed

  config = tiny.get_config()
  config.data.on_device = on_device
  loop.train(config, str(tmp_path / "clean"))  # the unpatched loop runs under the guard
  monkeypatch.setattr(feed_lib, "batches", host_batches)
  with pytest.raises(Exception, match="[Dd]isallowed host-to-device transfer"):
    loop.train(config, str(tmp_path / "patched"))


def test_train_records_carry_the_learning_rate(tmp_path):
  config = tiny.get_config()  # 40 steps, logged every 10
  config.optimizer.schedule = "warmup_cosine"
  config.optimizer.warmup_steps = 15
  loop.train(config, str(tmp_path))
  expected = optax.warmup_cosine_decay_schedule(0.0, config.optimizer.learning_rate, 15, 40, end_value=0.0)
  records = _records(tmp_path, "train")
  assert [r["step"] for r in records] == [10, 20, 30, 40]
  for r in records:  # the rate of the record's last update, which optax counts from 0
    assert r["learning_rate"] == pytest.approx(float(expected(r["step"] - 1)), rel=1e-6)
  assert records[0]["learning_rate"] < records[1]["learning_rate"]  # still warming up at step 10


def test_a_finished_run_evaluated_again_marks_its_test_record(tmp_path):
  config = tiny.get_config()
  first = loop.train(config, str(tmp_path))
  again = loop.train(config, str(tmp_path))
  tests = _records(tmp_path, "test")
  assert len(tests) == 2 and "reevaluation" not in tests[0] and tests[1]["reevaluation"] is True
  assert again["accuracy"] == first["accuracy"]


def test_restore_uses_the_runs_own_mesh_when_the_devices_allow(tmp_path):
  config = tiny.get_config()
  config.mesh.data, config.mesh.fsdp = 2, 4
  config.train.num_steps = 10
  loop.train(config, str(tmp_path))
  assert dict(restore.restore(str(tmp_path)).mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}
  on_one = restore.restore(str(tmp_path), devices=jax.devices()[:1])  # a laptop: data-parallel over what it has
  assert dict(on_one.mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 1}


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


def test_a_run_of_no_steps_is_refused_in_one_line(tmp_path):
  """num_epochs=0 is allowed beside num_steps > 0 (a step budget); both 0 would train nothing."""
  config = tiny.get_config()
  config.train.num_epochs, config.train.num_steps = 0, 0
  with pytest.raises(UserError, match="num_epochs and train.num_steps are both 0"):
    loop.train(config, str(tmp_path))
  config.train.num_steps = 10
  assert loop.train(config, str(tmp_path / "budget"))["accuracy"] > 0
