"""Issue 30 S5: after early stopping, the commands that use "the model" (eval, predict, serve, export, a warm
start) take the best step the run tested, not the newest, and say on stderr which step they use; --step=N and
--latest still choose."""
import json
import os
import subprocess
import sys

import pytest

import csv_run
from flaxforge import serving
from flaxforge.inference import predict
from flaxforge.trainer import evaluate, loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fake_validate(run, state, step):
  accuracy = {10: 0.5, 20: 0.8}.get(step, 0.7)  # the best at step 20, then a plateau below it
  values = {"loss": 1.0 - accuracy, "accuracy": accuracy}
  run.writer.write(step, "validation", values)
  return values


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
  """A text classifier that stopped early after step 50, its best (the one it tested) at step 20."""
  tmp = tmp_path_factory.mktemp("stopped")
  c = csv_run.config(tmp, csv_run.write_topics(tmp / "topics.csv"), **{
      "train.num_steps": 200, "train.eval_every_steps": 10, "checkpoint.keep": 1, "checkpoint.keep_best": 0})
  c.train.early_stopping.metric, c.train.early_stopping.patience = "accuracy", 3
  workdir = tmp / "run"
  patch = pytest.MonkeyPatch()
  patch.setattr(loop, "_validate", _fake_validate)
  try:
    loop.train(c, str(workdir))
  finally:
    patch.undo()
  assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [20, 50]
  return workdir


@pytest.mark.slow  # a whole training (the fixture)
def test_consumers_take_the_best_step_by_default_and_say_so(stopped, tmp_path, capfd):
  capfd.readouterr()
  assert evaluate.evaluate_workdir(str(stopped))["step"] == 20
  said = capfd.readouterr().err
  assert f"using step 20 of {stopped}: early stopping's best (validation accuracy 0.8000), the step the run " \
         "tested; the newest is step 50 (--latest)" in said, said
  assert predict.Predictor.from_workdir(str(stopped)).run.step == 20
  assert serving.export(str(stopped), str(tmp_path / "exported"))["step"] == 20
  assert evaluate.evaluate_workdir(str(stopped), step=50)["step"] == 50  # --step still chooses
  assert f"using step 50 of {stopped}: as asked (--step)" in capfd.readouterr().err


@pytest.mark.slow  # whole trainings
def test_a_warm_start_takes_the_best_step(stopped, tmp_path, capsys):
  c = csv_run.config(tmp_path, stopped.parent / "topics.csv", **{"train.num_steps": 2, "train.eval_every_steps": 2,
                                                                 "train.init_from": str(stopped)})
  loop.train(c, str(tmp_path / "warm"))
  assert f"warm start from step 20 in {stopped}" in capsys.readouterr().out


def _cli(command, *args):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return subprocess.run([sys.executable, "-m", f"flaxforge.launch.{command}", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # subprocess CLI runs
def test_the_commands_say_the_step_and_latest_still_chooses(stopped):
  default = _cli("eval", f"--workdir={stopped}")
  assert default.returncode == 0 and json.loads(default.stdout.splitlines()[-1])["step"] == 20, default.stderr
  assert "using step 20 of" in default.stderr
  latest = _cli("eval", f"--workdir={stopped}", "--latest")
  assert latest.returncode == 0 and json.loads(latest.stdout.splitlines()[-1])["step"] == 50, latest.stderr
  assert f"using step 50 of {stopped}: the newest checkpoint (--latest)" in latest.stderr
  both = _cli("predict", f"--workdir={stopped}", "--latest", "--step=50", "rocket orbit")
  assert both.returncode == 2 and both.stderr.strip().splitlines() == [
      "error: --step=50 and --latest each choose a checkpoint; pass only one of them"], both.stderr
