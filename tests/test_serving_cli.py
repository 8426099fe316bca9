"""export, serve and explain as a user runs them: subprocesses, a real port, SIGTERM."""
import json
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from conftest import HANG_GUARD_S, REPO, run_module, wait_until
from test_serving import train_text_run
from test_serving_http import free_port

pytestmark = pytest.mark.slow  # subprocess CLI runs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  return train_text_run(tmp_path_factory.mktemp("runs"))


def test_export_then_serve_answers_and_sigterm_drains_the_request_in_flight(run_dir, tmp_path):
  out = tmp_path / "exported"
  exported = json.loads(run_module("flaxforge.launch.export", f"--workdir={run_dir}", f"--out={out}")
                        .stdout.strip().splitlines()[-1])
  assert len(exported["content_hash"]) == 64 and (out / "model.jax").is_file()
  port = free_port()
  server = subprocess.Popen([sys.executable, "-m", "flaxforge.launch.serve", f"--export={out}", f"--port={port}",
                             "--host=0.0.0.0"], cwd=REPO, stderr=subprocess.PIPE, text=True)
  try:
    url = f"http://127.0.0.1:{port}"

    def healthy():
      try:
        return httpx.get(f"{url}/healthz").status_code == 200
      except httpx.TransportError:
        return False

    wait_until(healthy, server, "the server's /healthz")
    answer = {}

    def slow_body():  # the request is still arriving when SIGTERM does
      yield b'{"texts": ["bake the flour'
      time.sleep(1.5)
      yield b' in the oven"]}'

    asking = threading.Thread(target=lambda: answer.update(r=httpx.post(
        f"{url}/v1/predict", content=slow_body(), headers={"content-type": "application/json"},
        timeout=HANG_GUARD_S)))
    asking.start()
    time.sleep(0.5)
    server.send_signal(signal.SIGTERM)
    asking.join()
    assert answer["r"].status_code == 200
    assert answer["r"].json()["predictions"][0]["top"][0]["label"] == "cooking"
    assert server.wait(timeout=HANG_GUARD_S) == 0, server.stderr.read()[-2000:]
    # README: binding every network is said on stderr before the server starts.
    assert "warning: --host=0.0.0.0 serves every network this machine is on" in server.stderr.read()
    with pytest.raises(httpx.TransportError):
      httpx.get(f"{url}/healthz")
  finally:
    server.kill()
    server.wait()


def test_a_request_longer_than_drain_seconds_does_not_hold_the_exit(run_dir, tmp_path):
  """README: on SIGTERM the server waits for the requests in flight up to --drain_seconds, then exits 0. With
  --drain_seconds=1, a request whose body's last part is sent only once the server has exited: the server
  does not wait for it indefinitely (no time is asserted, so 1 s is not told from the default 30 s: the body
  waits for the exit, up to the hang guard), exits 0, and that request gets no prediction."""
  out = tmp_path / "exported"
  run_module("flaxforge.launch.export", f"--workdir={run_dir}", f"--out={out}")
  port = free_port()
  server = subprocess.Popen([sys.executable, "-m", "flaxforge.launch.serve", f"--export={out}", f"--port={port}",
                             "--drain_seconds=1"], cwd=REPO, stderr=subprocess.PIPE, text=True)
  try:
    url = f"http://127.0.0.1:{port}"

    def healthy():
      try:
        return httpx.get(f"{url}/healthz").status_code == 200
      except httpx.TransportError:
        return False

    wait_until(healthy, server, "the server's /healthz")
    seen = {}

    def slow_body():
      yield b'{"texts": ["bake the flour'
      server.send_signal(signal.SIGTERM)
      try:
        server.wait(timeout=HANG_GUARD_S)
      except subprocess.TimeoutExpired:
        pass
      seen["exited_before_the_rest"] = server.poll() is not None
      yield b' in the oven"]}'

    try:
      answer = httpx.post(f"{url}/v1/predict", content=slow_body(), headers={"content-type": "application/json"},
                          timeout=HANG_GUARD_S).status_code
    except httpx.TransportError as e:
      answer = type(e).__name__
    assert answer != 200, answer
    assert seen["exited_before_the_rest"] and server.wait(timeout=HANG_GUARD_S) == 0, server.stderr.read()[-2000:]
  finally:
    server.kill()
    server.wait()


def test_explain_prints_json_and_writes_html(run_dir, tmp_path):
  page = tmp_path / "out.html"
  proc = run_module("flaxforge.launch.explain", f"--workdir={run_dir}", "--json", f"--html={page}",
                    "bake the flour in the oven")
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["label"] == "cooking"
  assert [t["token"] for t in out["tokens"]] == "bake the flour the oven".split()  # 'in' is not in the vocabulary
  assert abs(sum(t["attribution"] for t in out["tokens"]) - (out["logit"] - out["baseline_logit"])) < 0.05 * abs(
      out["logit"] - out["baseline_logit"])
  text = page.read_text()
  assert text.startswith("<!doctype html>") and text.count("<span") == len(out["tokens"]) and "http" not in text
  plain = run_module("flaxforge.launch.explain", f"--workdir={run_dir}", "bake the flour").stdout
  assert plain.startswith("cooking ") and "bake(+" in plain
  bad = subprocess.run([sys.executable, "-m", "flaxforge.launch.explain", f"--workdir={run_dir}"], cwd=REPO,
                       capture_output=True, text=True, check=False)
  assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: no text to explain")
