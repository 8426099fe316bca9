"""SIGTERM/SIGINT end to end: the run stops after the step in flight with a checkpoint at the step it
reports, exits 0, and resumes from it; a second signal aborts at once; a signal before the first step has
finished (data preparation, the first compile, the first step) ends the run at once, saying what is kept."""
import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from etils import epath

from conftest import HANG_GUARD_S, cli_env, wait_until

pytestmark = pytest.mark.slow  # subprocess CLI runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LONG = ["--config.train.num_steps=100000", "--config.train.eval_every_steps=100000",
        "--config.checkpoint.every_steps=10", "--config.train.log_every=10"]


def _cmd(workdir, *overrides):
  return [sys.executable, "-m", "flaxforge.launch.train", "--config=launch/configs/tiny.py", f"--workdir={workdir}", *overrides]


def _steps(workdir) -> list[int]:
  d = epath.Path(workdir) / "checkpoints"
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


def _start_and_wait_for_checkpoint(workdir):
  proc = subprocess.Popen(_cmd(workdir, *LONG), cwd=REPO, env=cli_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  wait_until(lambda: _steps(workdir), proc, "a first checkpoint")
  return proc


def test_sigterm_checkpoints_the_step_it_reports_and_resumes(tmp_path):
  proc = _start_and_wait_for_checkpoint(tmp_path)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=HANG_GUARD_S)
  assert proc.returncode == 0, err
  match = re.search(r"stopped by SIGTERM after step (\d+); checkpoint saved in (\S+)\.", out)
  assert match, out + err
  stopped = int(match.group(1))
  assert max(_steps(tmp_path)) == stopped  # saved synchronously at the step reported, nothing later
  assert "Run the same command again to resume" in out

  resumed = subprocess.run(_cmd(tmp_path, f"--config.train.num_steps={stopped + 5}"), cwd=REPO, env=cli_env(),
                           capture_output=True, text=True)
  assert resumed.returncode == 0, resumed.stderr
  assert f"resumed from the checkpoint at step {stopped}" in resumed.stdout
  assert max(_steps(tmp_path)) == stopped + 5


def test_second_signal_aborts_at_once(tmp_path):
  proc = _start_and_wait_for_checkpoint(tmp_path)
  before = _steps(tmp_path)
  proc.send_signal(signal.SIGTERM)
  proc.send_signal(signal.SIGINT)  # a different signal, so the two cannot coalesce into one
  out, err = proc.communicate(timeout=HANG_GUARD_S)
  assert proc.returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM), (proc.returncode, err)  # handlers run in signal-number order
  said = re.search(r"aborting now; the last complete checkpoint is step (\d+) in ", err)
  assert said and int(said.group(1)) == max(_steps(tmp_path)), err  # what it says is what a restore finds
  assert "stopped by" not in out
  assert _steps(tmp_path)[:len(before)] == before  # earlier checkpoints untouched


def _held(workdir, phase, *overrides):
  """A tiny run held in `phase` (tests/held_start.py), once it says so; a run that never gets there is killed
  after 300 s (a guard against a hang, not a speed check). JAX's persistent compilation cache is off: a train
  step an earlier test compiled would be read back, and the compile phase would never be held."""
  proc = subprocess.Popen([sys.executable, "tests/held_start.py", phase, "--config=tiny", f"--workdir={workdir}",
                           *overrides], cwd=REPO, env=cli_env(JAX_COMPILATION_CACHE_DIR=""),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  guard = threading.Timer(300, proc.kill)
  guard.start()
  said = []
  for line in proc.stdout:
    said.append(line)
    if line.startswith(f"holding {phase}"):
      return proc, guard, said
  guard.cancel()
  raise AssertionError("".join(said) + proc.stderr.read()[-3000:])


def _signal_held(proc, guard, said, signum=signal.SIGTERM):
  """Signals the held run; (exit status, stdout) once it has exited. Held, the phase never ends by itself: only
  the signal can end the run, and the guard kills a run that ignores it."""
  proc.send_signal(signum)
  out, err = proc.communicate()
  guard.cancel()
  assert proc.returncode != -signal.SIGKILL, "the run ignored the signal: " + err[-3000:]
  return proc.returncode, "".join(said) + out


@pytest.mark.parametrize("phase, during", [("data", "data preparation"), ("compile", "the train step's compile"),
                                           ("step", "the first step")])
def test_a_signal_before_the_first_step_finished_ends_the_run_with_nothing_saved(tmp_path, phase, during):
  status, out = _signal_held(*_held(tmp_path, phase))
  assert status == 0, out
  assert f"stopped by SIGTERM during {during}; nothing to save yet. Run the same command again to start." in out
  assert _steps(tmp_path) == [] and "after step" not in out
  assert not (tmp_path / "lease.json").exists()  # released: the same command can start at once


def test_ctrl_c_in_a_resumed_runs_first_compile_keeps_its_checkpoint(tmp_path):
  first = subprocess.run(_cmd(tmp_path, "--config.train.num_steps=10"), cwd=REPO, env=cli_env(), capture_output=True,
                         text=True, timeout=300)
  assert first.returncode == 0 and _steps(tmp_path) == [10], first.stderr[-3000:]
  status, out = _signal_held(*_held(tmp_path, "compile", "--config.train.num_steps=20"), signal.SIGINT)
  assert status == 0, out
  assert ("stopped by SIGINT during the train step's compile; the checkpoint of step 10 is kept. Run the same "
          "command again to resume.") in out
  assert _steps(tmp_path) == [10]
