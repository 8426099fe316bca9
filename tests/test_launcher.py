"""launch/local_multiprocess.sh as a user meets it: it never hangs, whatever way its processes end; a
Ctrl-C (SIGINT to its whole process group, as a terminal sends it) checkpoints every process at one step, and
a SIGTERM to the launcher alone is passed on to every process."""
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading

import pytest

from conftest import HANG_GUARD_S, cli_env

pytestmark = pytest.mark.slow  # several processes

REPO = pathlib.Path(__file__).resolve().parent.parent
LAUNCHER = REPO / "launch" / "local_multiprocess.sh"


def _env(**extra):
  return cli_env(**{"PYTHON": sys.executable, "FLAXFORGE_HEARTBEAT_S": "10", **extra})


def test_processes_that_fail_at_once_end_the_launcher(tmp_path):
  """An interpreter that cannot start the trainer: every process has exited before the launcher waits (a
  launcher that waits for them with `wait -n` would wait forever)."""
  broken = tmp_path / "python"
  broken.write_text("#!/bin/sh\nexit 3\n")
  broken.chmod(0o755)
  run = subprocess.run(["bash", str(LAUNCHER), "3", "--workdir=unused"], env=_env(PYTHON=str(broken)),
                       capture_output=True, text=True, timeout=HANG_GUARD_S)
  assert run.returncode == 3, run.stderr
  assert re.search(r"process \d exited with status 3", run.stderr)


def test_ctrl_c_checkpoints_every_process_at_one_step_and_the_run_resumes(tmp_path):
  workdir = tmp_path / "run"
  flags = ["--config=tiny", f"--workdir={workdir}", "--config.train.num_steps=100000",
           "--config.train.eval_every_steps=100000", "--config.train.log_every=5", "--config.train.progress_bar=true"]
  launcher = subprocess.Popen(["bash", str(LAUNCHER), "2", *flags], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
  # A hang fails, never blocks CI.
  watchdog = threading.Timer(HANG_GUARD_S, os.killpg, (launcher.pid, signal.SIGKILL))
  watchdog.start()
  lines = []
  for line in launcher.stdout:  # wait until both processes train: process 0 logs its first interval
    lines.append(line)
    if re.match(r"step \d+/100000 ", line):
      break
  os.killpg(launcher.pid, signal.SIGINT)
  output = "".join(lines) + launcher.stdout.read()
  assert launcher.wait() == 0, output
  watchdog.cancel()
  stopped = re.search(r"^stopped by SIGINT after step (\d+); checkpoint saved", output, re.M)
  assert stopped, output
  step = stopped.group(1)
  checkpoints = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  assert checkpoints == [step], checkpoints  # one step, complete: both processes wrote their part of it
  assert not re.search(r"Traceback|\[1\] .*error", output), output

  resumed = subprocess.run(["bash", str(LAUNCHER), "2", *flags[:2], f"--config.train.num_steps={int(step) + 5}"],
                           env=_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  assert re.search(rf"^resumed from the checkpoint at step {step}", resumed.stdout, re.M), resumed.stdout
  assert resumed.stdout.strip().splitlines()[-1].startswith('{"split": "test"')


def test_a_sigterm_to_the_launcher_alone_reaches_every_process(tmp_path):
  """A scheduler's SIGTERM goes to the launcher only (no terminal signals the group): the first one is passed
  on, so each process stops in its own way (the trainers: a checkpoint) and the launcher exits 0."""
  (tmp_path / "worker.py").write_text("""import signal, sys, time
i = [a for a in sys.argv if a.startswith("--process_id=")][0].split("=")[1]
signal.signal(signal.SIGTERM, lambda *_: (print(f"process {i} stopped", flush=True), sys.exit(0)))
print("ready", flush=True)
time.sleep(60)
""")
  launcher = subprocess.Popen(["bash", str(LAUNCHER), "2"], env=_env(MODULE="worker", PYTHONPATH=str(tmp_path)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
  try:
    seen = []
    for line in launcher.stdout:  # the two processes share the pipe: their lines may interleave mid-line
      seen.append(line)
      if "".join(seen).count("ready") == 2:
        break
    assert "".join(seen).count("ready") == 2, (launcher.poll(), seen)
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=HANG_GUARD_S) == 0
    output = launcher.stdout.read()
    assert "process 0 stopped" in output and "[1] process 1 stopped" in output, (seen, output)
  finally:
    if launcher.poll() is None:
      os.killpg(launcher.pid, signal.SIGKILL)
