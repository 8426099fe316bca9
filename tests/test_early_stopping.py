"""Early stopping in the training loop: it stops at the step a controlled validation sequence dictates,
keeps and tests the best checkpoint (retention would otherwise delete it), goes on when given more
patience, and after a SIGKILL mid-run and a resume stops at the same step with the same test metrics."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import cli_env, wait_until
from flaxforge.core.errors import UserError
from flaxforge.launch.configs import tiny
from flaxforge.trainer import evaluate, loop

pytestmark = pytest.mark.slow  # whole trainings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Validation accuracy by step (0.7 elsewhere): improvements at 10 and 20, then a plateau below the best.
SEQUENCE = {10: 0.5, 20: 0.8}


def _config(patience):
  c = tiny.get_config()
  c.train.num_steps, c.train.eval_every_steps, c.train.log_every = 200, 10, 10
  c.checkpoint.keep, c.checkpoint.keep_best = 1, 0  # only early stopping's protection keeps step 20
  c.train.early_stopping.metric, c.train.early_stopping.patience = "accuracy", patience
  return c


def _fake_validate(run, state, step):
  accuracy = SEQUENCE.get(step, 0.7)
  values = {"loss": 1.0 - accuracy, "accuracy": accuracy}
  run.writer.write(step, "validation", values)
  return values


def _steps(workdir):
  d = workdir / "checkpoints"
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def _tests(workdir):
  return [r for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines()) if r["split"] == "test"]


def test_stops_after_patience_and_tests_the_best_checkpoint(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(loop, "_validate", _fake_validate)
  results = loop.train(_config(patience=3), str(tmp_path))
  out = capsys.readouterr().out
  assert "early stopping after step 50: validation accuracy has not improved by more than 0 for 3 validations " \
         "(best 0.8000 at step 20)" in out
  assert _steps(tmp_path) == [20, 50]  # keep=1 holds the last; the best is protected
  best = evaluate.evaluate_workdir(str(tmp_path), step=20)
  last = evaluate.evaluate_workdir(str(tmp_path), step=50)
  assert results["loss"] == best["loss"] != last["loss"]
  assert evaluate.evaluate_workdir(str(tmp_path), best=True)["step"] == 20  # eval --best: the same checkpoint
  assert _tests(tmp_path)[-1]["checkpoint_step"] == 20 and _tests(tmp_path)[-1]["step"] == 50

  again = loop.train(_config(patience=3), str(tmp_path))  # a stopped run stays stopped
  assert "already finished at step 50 (stopped early)" in capsys.readouterr().out
  assert again["loss"] == results["loss"] and _steps(tmp_path) == [20, 50]

  loop.train(_config(patience=5), str(tmp_path))  # more patience: it goes on, to 20 + 5 validations
  assert "early stopping after step 70" in capsys.readouterr().out and _steps(tmp_path) == [20, 70]


def test_min_delta_and_min_mode(tmp_path, monkeypatch):
  """With min_delta 0.35, 0.8 after 0.5 is no improvement; in min mode on loss the plateau (0.3) is."""
  monkeypatch.setattr(loop, "_validate", _fake_validate)
  c = _config(patience=2)
  c.train.early_stopping.min_delta = 0.35
  loop.train(c, str(tmp_path / "delta"))
  assert _steps(tmp_path / "delta") == [10, 30]
  c = _config(patience=2)
  c.train.early_stopping.metric, c.train.early_stopping.mode = "loss", "min"
  loop.train(c, str(tmp_path / "min"))  # losses 0.5, 0.2, 0.3, 0.3: best at 20, stop at 40
  assert _steps(tmp_path / "min") == [20, 40]


def test_a_metric_validation_lacks_is_one_line(tmp_path):
  c = _config(patience=2)
  c.train.early_stopping.metric = "acuracy"
  with pytest.raises(UserError, match="validation 'acuracy', which this run does not compute.*accuracy"):
    loop.train(c, str(tmp_path))


_DRIVER = """
import json, sys, time
from absl import flags
flags.FLAGS.mark_as_parsed()
from flaxforge.launch.configs import tiny
from flaxforge.trainer import loop

def fake_validate(run, state, step):
  time.sleep(0.3)  # room for the test's kill between checkpoints
  accuracy = {10: 0.5, 20: 0.8}.get(step, 0.7)
  run.writer.write(step, "validation", {"accuracy": accuracy})
  return {"loss": 1.0 - accuracy, "accuracy": accuracy}

loop._validate = fake_validate
c = tiny.get_config()
c.train.num_steps, c.train.eval_every_steps, c.train.log_every = 200, 10, 10
c.checkpoint.keep, c.checkpoint.keep_best = 1, 0
c.train.early_stopping.metric, c.train.early_stopping.patience = "accuracy", 5
print(json.dumps(loop.train(c, sys.argv[1])))
"""


def test_sigkill_and_resume_stops_at_the_same_step_with_the_same_test(tmp_path):
  driver = tmp_path / "driver.py"
  driver.write_text(textwrap.dedent(_DRIVER))
  cmd = lambda w: [sys.executable, str(driver), str(w)]  # pylint: disable=unnecessary-lambda-assignment
  whole = subprocess.run(cmd(tmp_path / "whole"), cwd=REPO, env=cli_env(), capture_output=True, text=True)
  assert whole.returncode == 0, whole.stderr[-3000:]
  assert "early stopping after step 70" in whole.stdout

  killed = tmp_path / "killed"
  proc = subprocess.Popen(cmd(killed), cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  # Step 20 is the best: 40 holds 2 bad validations.
  wait_until(lambda: max(_steps(killed) or [0]) >= 40, proc, "checkpoint 40")
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  proc.stderr.close()
  assert max(_steps(killed)) < 70 and 20 in _steps(killed)
  resumed = subprocess.run(cmd(killed), cwd=REPO, env=cli_env(), capture_output=True, text=True)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "resumed from the checkpoint at step" in resumed.stdout
  assert "early stopping after step 70" in resumed.stdout
  assert json.loads(resumed.stdout.splitlines()[-1]) == json.loads(whole.stdout.splitlines()[-1])
  assert _steps(killed) == _steps(tmp_path / "whole") == [20, 70]
