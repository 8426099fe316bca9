"""Damaged checkpoints: a truncated or bit-flipped newest step falls back (with a warning) to the newest
intact one, a leftover unfinished save is ignored, and non-finite losses stop (or skip) as configured."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from conftest import checkpoint_arrays, cli_env
from flaxforge.trainer import checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(workdir, *overrides):
  return subprocess.run([sys.executable, "-m", "flaxforge.launch.train", "--config=launch/configs/tiny.py",
                         f"--workdir={workdir}", *overrides], cwd=REPO, env=cli_env(), capture_output=True,
                        text=True)


_arrays = checkpoint_arrays


def _same(a, b):
  return a[0] == b[0] and all(x.tobytes() == y.tobytes() for x, y in zip(a[1], b[1]))


def _largest_array_file(step_dir: pathlib.Path) -> pathlib.Path:
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  return max(files, key=lambda p: p.stat().st_size)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """tiny.py: 40 steps, checkpoints at 20 and 40."""
  workdir = tmp_path_factory.mktemp("trained")
  result = _train(workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@pytest.mark.slow  # subprocess CLI runs
def test_truncated_newest_step_falls_back_and_training_redoes_it(trained, tmp_path, capfd):
  shutil.copytree(trained, tmp_path / "w")
  w = tmp_path / "w"
  victim = _largest_array_file(w / "checkpoints" / "40")
  victim.write_bytes(victim.read_bytes()[:victim.stat().st_size // 2])

  assert _arrays(w)[0] == 20  # read-only restore (eval): falls back, warns, moves nothing
  assert "checkpoint step 40" in capfd.readouterr().err and (w / "checkpoints" / "40").exists()

  result = _train(w)  # training: falls back to 20, moves 40 aside, redoes 21..40 exactly
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.search(r"warning: checkpoint step 40 .* is damaged .*falling back to step 20", result.stderr)
  assert "resumed from the checkpoint at step 20" in result.stdout
  assert (w / "checkpoints" / "40.damaged").exists()
  assert _same(_arrays(w), _arrays(trained))


@pytest.mark.slow  # subprocess CLI runs
def test_flipped_bit_is_caught_by_the_fingerprint(trained, tmp_path, capfd):
  shutil.copytree(trained, tmp_path / "w")
  victim = _largest_array_file(tmp_path / "w" / "checkpoints" / "40")
  data = bytearray(victim.read_bytes())
  data[len(data) // 2] ^= 0x40  # Orbax itself loads this silently (measured)
  victim.write_bytes(bytes(data))
  assert _same(_arrays(tmp_path / "w"), _arrays(trained, step=20))
  assert "do not match the fingerprint" in capfd.readouterr().err


@pytest.mark.slow  # subprocess CLI runs
def test_unfinished_save_is_ignored(trained, tmp_path):
  shutil.copytree(trained, tmp_path / "w")
  ckpts = tmp_path / "w" / "checkpoints"
  shutil.copytree(ckpts / "40", ckpts / "60.orbax-checkpoint-tmp")  # a save killed before its commit
  (ckpts / "60.orbax-checkpoint-tmp" / "commit_success.txt").unlink()
  assert _same(_arrays(tmp_path / "w"), _arrays(trained))
  writer = checkpoint.Checkpointer(ckpts)  # the trainer's (writable) manager
  assert writer.steps() == [20, 40] and writer.latest_step() == 40
  writer.close()


@pytest.mark.slow  # subprocess CLI runs
def test_nonfinite_stop_names_step_and_last_good_checkpoint(trained, tmp_path):
  w = tmp_path / "w"
  shutil.copytree(trained, w)
  shutil.rmtree(w / "checkpoints" / "40")
  before = _arrays(w)
  config = json.loads((w / "config.json").read_text())  # a run whose learning rate diverges (the rate
  config["optimizer"]["learning_rate"] = 1e30  # defines the run: a rerun may not change it)
  (w / "config.json").write_text(json.dumps(config))
  result = _train(w, "--config.train.num_steps=60", "--config.optimizer.learning_rate=1e30",
                  "--config.checkpoint.every_steps=5")
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "Traceback" not in result.stderr
  match = re.search(r"non-finite loss or gradient at step (\d+); the last good checkpoint is step 20 in ", errors[0])
  assert match and 20 <= int(match.group(1)) <= 22, errors[0]
  assert "on_nonfinite=skip" in errors[0]
  assert checkpoint.Checkpointer(w / "checkpoints", read_only=True).steps() == [20]  # nothing saved past it
  assert _same(_arrays(w), before)  # and it is intact


@pytest.mark.slow  # subprocess CLI runs
def test_nonfinite_skip_goes_on_and_counts(tmp_path):
  result = _train(tmp_path, "--config.train.num_steps=20", "--config.optimizer.learning_rate=1e30",
                  "--config.train.on_nonfinite=skip")
  assert result.returncode == 0, result.stderr[-3000:]
  records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  skipped = sum(r.get("nonfinite_steps", 0) for r in records if r["split"] == "train")
  assert 15 <= skipped <= 20  # lr=1e30: after the first update or two, every update is dropped
  assert checkpoint.Checkpointer(tmp_path / "checkpoints", read_only=True).latest_step() == 20


def test_abandoned_reads_of_a_damaged_step_are_dropped_and_nothing_else_is():
  """CI once printed asyncio's 'Task exception was never retrieved' traceback for a damaged step whose DATA_LOSS
  came wrapped in Orbax's 'Encountered error while reading array index'; the one-line error must stay one line."""
  import logging
  from flaxforge.trainer.orbax_quiet import _AbandonedRead

  def record(msg, error):
    return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None, (type(error), error, None))

  wrapped = Exception("Encountered error while reading array index: (slice(0, 64, 1),). See full TensorStore details")
  wrapped.__cause__ = ValueError("DATA_LOSS: Error reading ...")
  never = "Task exception was never retrieved\nfuture: <Task finished>"
  keep = _AbandonedRead()
  assert not keep.filter(record(never, wrapped))
  assert not keep.filter(record(never, ValueError("DATA_LOSS: Error reading")))
  assert keep.filter(record(never, ValueError("some other bug")))  # other lost task errors still show
  assert keep.filter(record("Encountered error while reading array index", wrapped))  # and other records too
