"""What a user plots after a resume (issue 27, item 7): the records of the steps trained after the checkpoint a
run resumes from, which it trains again, are dropped from metrics.jsonl and purged from TensorBoard, so each
step appears once."""
import collections
import json
import shutil

import pytest
from tensorboard.backend.event_processing import event_accumulator

from flaxforge.launch.configs import tiny
from flaxforge.trainer import loop

pytestmark = pytest.mark.slow  # whole trainings


def _config():
  c = tiny.get_config()
  c.checkpoint.every_steps, c.checkpoint.keep, c.train.log_every = 10, 10, 5
  return c


def test_each_step_is_recorded_once_after_a_resume(tmp_path):
  loop.train(_config(), str(tmp_path))
  for step in (30, 40):  # as if killed after step 39, once its records were written, before its checkpoint
    shutil.rmtree(tmp_path / "checkpoints" / str(step))
  loop.train(_config(), str(tmp_path))  # resumes from step 20
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  counts = collections.Counter((r["step"], r["split"]) for r in records)
  assert [k for k, n in counts.items() if n > 1] == []
  assert [r["step"] for r in records if r["split"] == "train"] == [5, 10, 15, 20, 25, 30, 35, 40]
  assert [r["step"] for r in records if r["split"] == "validation"] == [20, 40]
  acc = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
  acc.Reload()
  assert [e.step for e in acc.Scalars("train/loss")] == [5, 10, 15, 20, 25, 30, 35, 40]
  assert [e.step for e in acc.Scalars("test/accuracy")] == [40]
