"""trainer/loop.py: the step loop never syncs implicitly, each train record carries the learning rate, a
rerun of a finished run marks its test record, and a restore uses the run's own mesh."""
import json

import jax
import numpy as np
import optax
import pytest

from flaxforge.launch.configs import tiny
from flaxforge.trainer import feed as feed_lib
from flaxforge.trainer import loop, restore


def _records(workdir, split):
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
