"""A bounded load test of `flaxforge.launch.serve` on localhost: requests/s, p50 and p99 latency at 1, 8 and 32
concurrent clients, with dynamic batching on and off. Each setting sends a fixed number of one-text
requests and stops by itself; the server runs in its own process and is stopped with SIGTERM.

  PYTHONPATH=. python -m benchmarks.serve_load --workdir=runs/20ng_bow --requests=2000 --out=benchmarks/results/serve_load.jsonl
"""
import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np

from benchmarks import records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["The hockey playoff game went to overtime before the home team scored.",
         "NASA launched the satellite into orbit on a rocket yesterday.",
         "My hard drive controller fails when I install the new SCSI card.",
         "The senate debated the gun control bill for hours.",
         "Does anyone know a good dealer for a used car with a V8 engine?"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start(source_flag: str, batching: bool, port: int, max_wait_ms: float) -> subprocess.Popen:
  cmd = [sys.executable, "-m", "flaxforge.launch.serve", source_flag, f"--port={port}",
         f"--max_wait_ms={max_wait_ms}", "--batching" if batching else "--nobatching"]
  proc = subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.DEVNULL)
  for _ in range(1200):
    try:
      conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
      conn.request("GET", "/healthz")
      if conn.getresponse().status == 200:
        return proc
    except OSError:
      time.sleep(0.1)
  proc.kill()
  raise RuntimeError("the server did not start")


def _load(port: int, clients: int, requests: int) -> dict:
  """`requests` POST /v1/predict calls over `clients` keep-alive connections."""
  latencies, errors, lock, sent = [], [0], threading.Lock(), [0]

  def client(i):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while True:
      with lock:
        if sent[0] >= requests:
          return
        sent[0] += 1
        n = sent[0]
      body = json.dumps({"texts": [TEXTS[(n + i) % len(TEXTS)]], "top_k": 1})
      start = time.perf_counter()
      conn.request("POST", "/v1/predict", body, {"Content-Type": "application/json"})
      response = conn.getresponse()
      response.read()
      with lock:
        latencies.append(time.perf_counter() - start)
        errors[0] += response.status != 200

  threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
  start = time.perf_counter()
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  wall = time.perf_counter() - start
  ms = np.asarray(latencies) * 1000
  return {"clients": clients, "requests": len(latencies), "errors": errors[0], "seconds": round(wall, 3),
          "requests_per_second": round(len(latencies) / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 2),
          "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--workdir")
  source.add_argument("--export")
  parser.add_argument("--requests", type=int, default=2000, help="per setting")
  parser.add_argument("--clients", default="1,8,32")
  parser.add_argument("--max_wait_ms", type=float, default=5.0)
  parser.add_argument("--out", help="append one JSON line per setting here")
  args = parser.parse_args()
  source_flag = f"--workdir={args.workdir}" if args.workdir else f"--export={args.export}"
  rows = []
  for batching in (True, False):
    port = _free_port()
    server = _start(source_flag, batching, port, args.max_wait_ms)
    try:
      _load(port, 32, 200)  # warm-up: every padded batch size compiles here
      for clients in [int(c) for c in args.clients.split(",")]:
        row = {"batching": batching, "max_wait_ms": args.max_wait_ms, "source": source_flag,
               **_load(port, clients, args.requests)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    finally:
      server.send_signal(signal.SIGTERM)
      server.wait(60)
  if args.out:
    records.append(args.out, rows)


if __name__ == "__main__":
  main()
