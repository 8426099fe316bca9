"""How long a user waits before the first answer (issue 27, item 3): `flaxforge --help`, a bad flag, a bad config
value, `predict` of 2 texts on a small text run, and `serve` ready (GET /healthz answers 200) for a MiniLM
fine-tune. Each is the wall time of the `flaxforge` command as a user starts it (a new process, one CPU device);
medians of --repeats runs; the machine, its CPU count and the load average before and after each case with
the figures. `predict` and `serve` run with JAX's persistent compilation cache as the command sets it up (an
untimed first run fills it); `predict_cold` and `serve_cold` with an empty cache each time, as the first
command after a training does.

  python benchmarks/startup.py --out=benchmarks/results/startup.jsonl [--minilm=/work/shared/models/all-MiniLM-L6-v2]

The two runs it needs are trained once into --scratch (a text_csv run on a generated 3-topic CSV; a
finetune_text run of MiniLM for a few steps) and reused. `--compare=OTHER/bin/flaxforge` times another
installation (an older commit's venv) on the same runs too, alternating with this one run by run, so both see
the same load; its records carry "impl": "compare".
"""
import argparse
import csv
import http.client
import json
import os
import pathlib
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

FLAXFORGE = str(pathlib.Path(sys.executable).parent / "flaxforge")
TOPICS = {"space": "rocket orbit launch moon planet star", "food": "bread cheese soup apple rice cake",
          "sport": "goal match team ball score coach"}


def _env(cold: bool = False):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  if cold:  # a compilation cache of its own, empty
    env["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="flaxforge_cold_cache_")
  return env


def _timed(args, cwd, cold: bool = False, flaxforge: str = FLAXFORGE) -> float:
  env = _env(cold)
  start = time.perf_counter()
  subprocess.run([flaxforge, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
  seconds = time.perf_counter() - start
  if cold:
    shutil.rmtree(env["JAX_COMPILATION_CACHE_DIR"])
  return seconds


def _serve_ready(args, cwd, cold: bool = False, flaxforge: str = FLAXFORGE) -> float:
  """Seconds from starting `flaxforge serve` to its first 200 from /healthz; the server is then stopped."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = _env(cold)
  start = time.perf_counter()
  proc = subprocess.Popen([flaxforge, "serve", *args, f"--port={port}"], cwd=cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    while proc.poll() is None:
      try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        if conn.getresponse().status == 200:
          return time.perf_counter() - start
      except OSError:
        pass
      time.sleep(0.05)
    raise RuntimeError(f"serve exited with status {proc.returncode}")
  finally:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    if cold:
      shutil.rmtree(env["JAX_COMPILATION_CACHE_DIR"])


def _train(args, cwd):
  proc = subprocess.run([FLAXFORGE, "train", *args], cwd=cwd, env=_env(), capture_output=True, text=True)
  if proc.returncode:
    raise RuntimeError(proc.stderr[-3000:])


def _text_run(scratch: pathlib.Path) -> pathlib.Path:
  run = scratch / "text_run"
  if not (run / "checkpoints").exists():
    with open(scratch / "topics.csv", "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(("text", "label"))
      for i in range(300):
        topic = list(TOPICS)[i % 3]
        writer.writerow((" ".join(TOPICS[topic].split()[j % 6] for j in range(i % 5, i % 5 + 4)), topic))
    _train(["--config=text_csv", f"--workdir={run}", f"--config.data.path={scratch / 'topics.csv'}",
            f"--config.data.data_dir={scratch / 'tfds'}", "--config.train.num_epochs=2"], scratch)
  return run


def _minilm_run(scratch: pathlib.Path, minilm: str) -> pathlib.Path:
  run = scratch / "minilm_run_s256"  # finetune_text's defaults (sequence 256), a few steps
  if not (run / "checkpoints").exists():
    _text_run(scratch)
    _train(["--config=finetune_text", f"--workdir={run}", f"--config.model.pretrained={minilm}",
            f"--config.data.path={scratch / 'topics.csv'}", f"--config.data.data_dir={scratch / 'tfds'}",
            "--config.train.num_steps=4", "--config.optimizer.warmup_steps=0"], scratch)
  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--scratch", default="/tmp/flaxforge_startup")
  parser.add_argument("--minilm", default=os.path.join(os.environ.get("FLAXFORGE_MODELS", "/work/shared/models"),
                                                       "all-MiniLM-L6-v2"))
  parser.add_argument("--cases", default="help,bad_flag,bad_value,bad_input,predict,predict_cold,serve,serve_cold")
  parser.add_argument("--out", default="")
  parser.add_argument("--compare", default="", help="another installation's flaxforge command, timed alternately")
  args = parser.parse_args()
  scratch = pathlib.Path(args.scratch)
  scratch.mkdir(parents=True, exist_ok=True)
  text_run = lambda: _text_run(scratch)
  minilm_run = lambda: _minilm_run(scratch, args.minilm)
  cases = {  # name: (what it runs, given the flaxforge command)
      "help": lambda ff: _timed(["--help"], scratch, flaxforge=ff),
      "bad_flag": lambda ff: _timed(["train", "--config=tiny", f"--workdir={scratch / 'x'}", "--nonsense"], scratch,
                                    flaxforge=ff),
      "bad_value": lambda ff: _timed(["train", "--config=tiny", f"--workdir={scratch / 'x'}",
                                      "--config.data.batch_size=0"], scratch, flaxforge=ff),
      "bad_input": lambda ff: _timed(["predict", f"--workdir={text_run()}", "--input=missing.txt"], scratch,
                                     flaxforge=ff),
      "predict": lambda ff: _timed(["predict", f"--workdir={text_run()}", "rocket orbit", "bread cheese"], scratch,
                                   flaxforge=ff),
      "predict_cold": lambda ff: _timed(["predict", f"--workdir={text_run()}", "rocket orbit", "bread cheese"],
                                        scratch, cold=True, flaxforge=ff),
      "serve": lambda ff: _serve_ready([f"--workdir={minilm_run()}"], scratch, flaxforge=ff),
      "serve_cold": lambda ff: _serve_ready([f"--workdir={minilm_run()}"], scratch, cold=True, flaxforge=ff),
  }
  impls = {"this": FLAXFORGE, **({"compare": args.compare} if args.compare else {})}
  for name in args.cases.split(","):
    for command in impls.values():
      cases[name](command)  # prepares what the case needs (a trained run), fills the caches, untimed
    before = os.getloadavg()
    seconds = {impl: [] for impl in impls}
    for _ in range(args.repeats):
      for impl, command in impls.items():
        seconds[impl].append(cases[name](command))
    after = os.getloadavg()
    for impl, runs in seconds.items():
      record = {"case": name, "impl": impl, "command": impls[impl], "median_s": round(statistics.median(runs), 3),
                "runs_s": [round(s, 3) for s in runs], "load_before": [round(x, 2) for x in before],
                "load_after": [round(x, 2) for x in after], "cpus": os.cpu_count(), "machine": platform.node(),
                "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
      print(json.dumps(record), flush=True)
      if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
          f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
  main()
