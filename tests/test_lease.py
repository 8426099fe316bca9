"""Case 3: one writer per work directory. A lease file names the holder; a live one refuses a second
training in one line, a stale one (dead PID, expired heartbeat) is taken over with a warning; eval does
not need it."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import HANG_GUARD_S, cli_env, wait_until
from flaxforge.trainer import lease as lease_lib
from flaxforge.core.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _holder(path, *, host=None, pid=None, heartbeat_age=0.0):
  now = time.time()
  path.write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid, "started": now - 100,
                              "heartbeat": now - heartbeat_age, "token": "theirs"}))


@pytest.fixture
def other_process():
  proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  yield proc.pid
  proc.kill()
  proc.wait()


def test_a_live_holder_is_named_and_a_dead_one_taken_over(tmp_path, other_process, capfd):
  path = tmp_path / "lease.json"
  _holder(path, pid=other_process)
  with pytest.raises(UserError) as e:
    lease_lib.Lease(path, settle_s=0).acquire()
  assert f"is in use by a training on host {socket.gethostname()} pid {other_process}" in str(e.value)
  assert "pass another --workdir" in str(e.value) and "\n" not in str(e.value)
  _holder(path, host="elsewhere", pid=1)  # another host: only its heartbeat can tell
  with pytest.raises(UserError, match="host elsewhere pid 1"):
    lease_lib.Lease(path, settle_s=0).acquire()
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
  _holder(path, pid=int(dead.stdout))
  mine = lease_lib.Lease(path, settle_s=0)
  mine.acquire()
  warned = capfd.readouterr().err
  assert "taking over the lease" in warned and "(its process is gone)" in warned
  assert json.loads(path.read_text())["pid"] == os.getpid()
  mine.release()
  assert not path.exists()


def test_an_expired_heartbeat_is_taken_over_and_a_live_one_refreshed(tmp_path, capfd):
  path = tmp_path / "lease.json"
  _holder(path, host="elsewhere", pid=1, heartbeat_age=120)
  mine = lease_lib.Lease(path, ttl_s=0.6, settle_s=0)
  mine.acquire()
  assert "no heartbeat for 120 s" in capfd.readouterr().err
  first = json.loads(path.read_text())["heartbeat"]
  time.sleep(0.5)
  assert json.loads(path.read_text())["heartbeat"] > first  # the thread refreshes it every ttl / 6
  mine.release()


def _train(workdir, *flags):
  return subprocess.Popen([sys.executable, "-m", "flaxforge.launch.train", "--config=launch/configs/tiny.py",
                           f"--workdir={workdir}", *flags], cwd=REPO, env=cli_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # subprocess CLI runs
def test_a_second_training_on_the_same_workdir_is_refused(tmp_path):
  # Far more steps than the second training takes to be refused (tiny.py runs 2,000 in seconds), so the first
  # is still training when the SIGTERM comes.
  first = _train(tmp_path, "--config.train.num_steps=1000000", "--config.train.eval_every_steps=100000")
  wait_until((tmp_path / "lease.json").exists, first, "the first training's lease")
  second = _train(tmp_path, "--config.seed=1")
  out, err = second.communicate(timeout=HANG_GUARD_S)
  first.terminate()  # SIGTERM: the first checkpoints and exits 0
  first_out, first_err = first.communicate(timeout=HANG_GUARD_S)
  assert second.returncode == 2, err
  assert err.strip().splitlines()[-1].startswith(f"error: {tmp_path} is in use by a training on host ")
  assert first.returncode == 0, first_err[-2000:]
  assert "stopped by SIGTERM" in first_out
  assert json.loads((tmp_path / "config.json").read_text())["seed"] == 0  # the second wrote nothing
  assert not (tmp_path / "lease.json").exists()
