"""The command line as a user runs it: train, files in the work directory, eval, resume, bad input."""
import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, cli_env

pytestmark = pytest.mark.slow  # subprocess CLI runs


def _run(*args, env_extra=None):
  env = cli_env(**(env_extra or {}))  # one device, as a user's laptop
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("run")
  proc = _run("flaxforge.launch.train", "--config=launch/configs/tiny.py", f"--workdir={workdir}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def test_train_prints_test_metrics_and_fills_the_workdir(trained):
  workdir, proc = trained
  last = json.loads(proc.stdout.strip().splitlines()[-1])
  assert last["split"] == "test" and 0.5 < last["accuracy"] <= 1.0
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert {r["split"] for r in records} == {"train", "validation", "test"}
  assert all({"step", "split", "loss", "accuracy"} <= set(r) for r in records)
  assert [r["step"] for r in records if r["split"] == "validation"] == [20, 40]
  assert json.loads((workdir / "config.json").read_text())["train"]["num_steps"] == 40
  assert (workdir / "checkpoints" / "40").is_dir()


def test_tensorboard_events_are_readable_without_tensorflow(trained):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(str(trained[0] / "tensorboard"))
  acc.Reload()
  assert {"train/loss", "train/learning_rate", "validation/accuracy", "test/accuracy"} <= set(acc.Tags()["scalars"])
  assert [e.step for e in acc.Scalars("validation/accuracy")] == [20, 40]


def test_eval_reports_the_training_test_metrics(trained):
  workdir, proc = trained
  train_result = json.loads(proc.stdout.strip().splitlines()[-1])
  out = _run("flaxforge.launch.eval", f"--workdir={workdir}")
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["step"] == 40 and result["accuracy"] == train_result["accuracy"]


def test_eval_best_picks_the_step_with_the_best_validation_accuracy(trained, tmp_path):
  """Both of the config's best modes: whichever step is best under "max", the other is best under "min",
  so an eval that took the latest step would fail one of them."""
  workdir = tmp_path / "run"
  shutil.copytree(trained[0], workdir)
  validation = {r["step"]: r["accuracy"] for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
                if r["split"] == "validation"}
  assert len(set(validation.values())) == 2, validation  # distinct, so each mode has one answer
  config = json.loads((workdir / "config.json").read_text())
  for mode, pick in (("max", max), ("min", min)):
    config["checkpoint"]["best_mode"] = mode
    (workdir / "config.json").write_text(json.dumps(config))
    out = _run("flaxforge.launch.eval", f"--workdir={workdir}", "--best")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["step"] == pick(validation, key=validation.get), mode


def test_eval_step_restores_that_step(trained):
  workdir, _ = trained
  out = _run("flaxforge.launch.eval", f"--workdir={workdir}", "--step=20")
  assert out.returncode == 0, out.stderr[-2000:]
  at_20 = json.loads(out.stdout.strip().splitlines()[-1])
  at_40 = json.loads(_run("flaxforge.launch.eval", f"--workdir={workdir}").stdout.strip().splitlines()[-1])
  assert at_20["step"] == 20 and at_20["loss"] != at_40["loss"]  # another checkpoint's parameters


def test_rerun_of_a_finished_run_says_so_and_duplicates_no_record(trained):
  """Its test record in metrics.jsonl is marked as a re-evaluation; TensorBoard gets no second event file."""
  events = sorted((trained[0] / "tensorboard").iterdir())
  out = _run("flaxforge.launch.train", "--config=launch/configs/tiny.py", f"--workdir={trained[0]}")
  assert out.returncode == 0 and "already finished at step 40" in out.stdout
  tests = [r for r in map(json.loads, (trained[0] / "metrics.jsonl").read_text().splitlines()) if r["split"] == "test"]
  assert [r.get("reevaluation") for r in tests] == [None, True]
  assert sorted((trained[0] / "tensorboard").iterdir()) == events


@pytest.mark.parametrize("flag,message", [  # an unknown field and an unwritable --workdir: test_bad_input.py
    ("--config.data.batch_size=abc", "--config.data.batch_size=abc: invalid literal for int() with base 10: 'abc' "
                                     "(see --help: what each flag and config field takes)"),
    ("--config.optimizer.name=adamax", "config.optimizer.name = 'adamax' is not one of: sgd, momentum, adam, adamw"),
])
def test_config_mistakes_end_in_one_line_and_exit_2(tmp_path, flag, message):
  out = _run("flaxforge.launch.train", "--config=launch/configs/tiny.py", f"--workdir={tmp_path}", flag)
  assert out.returncode == 2
  assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_batch_that_does_not_divide_over_devices_is_refused(tmp_path):
  out = _run("flaxforge.launch.train", "--config=launch/configs/tiny.py", f"--workdir={tmp_path}",
             "--config.data.batch_size=12", env_extra={"JAX_NUM_CPU_DEVICES": "8"})
  assert out.returncode == 2 and "batch size 12 does not divide over 8" in out.stderr
  assert len(out.stderr.strip().splitlines()) == 1


def test_a_relative_workdir_works_for_train_and_eval(tmp_path):
  run = lambda *a: subprocess.run([sys.executable, "-m", *a], cwd=tmp_path, env=cli_env(PYTHONPATH=str(REPO)),
                                  capture_output=True, text=True)
  trained = run("flaxforge.launch.train", f"--config={REPO}/launch/configs/tiny.py", "--workdir=runs/rel")
  assert trained.returncode == 0, trained.stderr[-2000:]
  assert (tmp_path / "runs" / "rel" / "checkpoints" / "40").is_dir()
  evaluated = run("flaxforge.launch.eval", "--workdir=runs/rel")
  assert evaluated.returncode == 0 and json.loads(evaluated.stdout.strip().splitlines()[-1])["step"] == 40
