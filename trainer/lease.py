"""One writer per work directory: a lease file (host, PID, start time, heartbeat) that a thread refreshes.

`flock` does not work on gs:// or many NFS mounts, so the lease is a plain JSON file written through epath.
A second writer reads it and is refused while the holder is alive: its heartbeat younger than `ttl_s` and,
on the same host, its PID running. A stale lease (a dead local PID or an expired heartbeat) is taken over
with a one-line warning. Writing and then reading back after a short pause settles two starts that race.
"""
import json
import os
import socket
import sys
import threading
import time
import uuid

from etils import epath

from flaxforge.core.errors import UserError

TTL_S = float(os.environ.get("FLAXFORGE_LEASE_TTL_S", "60"))  # heartbeats are refreshed every TTL_S / 6


class Lease:
  """`acquire()` or UserError naming the holder; `release()` deletes the file if it is still ours."""

  def __init__(self, path, *, ttl_s: float = TTL_S, settle_s: float = 0.2):
    self.path, self.ttl_s, self.settle_s = epath.Path(path), ttl_s, settle_s
    self.token = uuid.uuid4().hex
    self._record = {"host": socket.gethostname(), "pid": os.getpid(), "started": round(time.time(), 3),
                    "token": self.token}
    self._stop = threading.Event()
    self._thread = None

  def acquire(self) -> None:
    holder = self._read()
    if holder and holder.get("token") != self.token and not self._ours(holder):
      why_stale = self._stale(holder)
      if not why_stale:
        raise UserError(f"{self.path.parent} is in use by a training on {_who(holder)}; wait for it to end, "
                        "or pass another --workdir")
      print(f"warning: taking over the lease of {_who(holder)} on {self.path.parent} ({why_stale})",
            file=sys.stderr)
    self._write()
    time.sleep(self.settle_s)
    winner = self._read()
    if not winner or winner.get("token") != self.token:
      raise UserError(f"{self.path.parent} was just taken by a training on {_who(winner or {})}; wait for it "
                      "to end, or pass another --workdir")
    self._thread = threading.Thread(target=self._beat, name="workdir-lease", daemon=True)
    self._thread.start()

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    holder = self._read()
    if holder and holder.get("token") == self.token:
      self.path.unlink()

  def _beat(self):
    while not self._stop.wait(self.ttl_s / 6):
      holder = self._read()
      if holder and holder.get("token") != self.token:
        print(f"warning: the lease on {self.path.parent} was taken over by {_who(holder)}", file=sys.stderr)
        return
      try:
        self._write()
      except OSError:  # the directory was removed under a run that ended with an error: nothing to hold
        return

  def _write(self):
    self.path.write_text(json.dumps({**self._record, "heartbeat": round(time.time(), 3)}))

  def _read(self) -> dict | None:
    try:
      return json.loads(self.path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # absent, or caught half-written: no holder to respect
      return None

  def _ours(self, holder: dict) -> bool:
    """This very process (an earlier run in it that ended with an error): no one else to respect."""
    return holder.get("host") == self._record["host"] and holder.get("pid") == self._record["pid"]

  def _stale(self, holder: dict) -> str:
    age = time.time() - float(holder.get("heartbeat", 0))
    if age > self.ttl_s:
      return f"no heartbeat for {age:.0f} s"
    if holder.get("host") == self._record["host"] and not _running(int(holder.get("pid", -1))):
      return "its process is gone"
    return ""


def _running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's process
    return True
  return pid > 0


def _who(holder: dict) -> str:
  started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started", 0))))
  return f"host {holder.get('host', '?')} pid {holder.get('pid', '?')} (started {started})"
