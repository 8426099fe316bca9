"""Runs one measurement in its own process and records what else the machine was doing meanwhile."""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from benchmarks import workloads

JEMALLOC = {"LD_PRELOAD": "libjemalloc.so.2", "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"}


def _busy_jiffies():
  with open("/proc/stat") as f:
    v = [int(x) for x in f.readline().split()[1:]]
  return sum(v) - v[3] - v[4]  # all but idle and iowait


def run(cmd, env_extra=None, cwd=workloads.REPO, timeout=900):
  """(stdout, stderr, foreign_cpu_frac): the share of the machine other processes used while `cmd` ran."""
  env = {**os.environ, "PYTHONPATH": workloads.REPO, **(env_extra or {})}
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  busy0, t0 = _busy_jiffies(), time.time()
  proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
  wall = time.time() - t0
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  ours = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
  busy = (_busy_jiffies() - busy0) / os.sysconf("SC_CLK_TCK")
  foreign = max(0.0, busy - ours) / (os.cpu_count() * wall)
  if proc.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  return proc.stdout, proc.stderr, foreign


def json_line(stdout):
  return json.loads([l for l in stdout.splitlines() if l.startswith("{")][-1])


def trainer(name, steps_per_call=1, jemalloc=False):
  """`python -m launch.train` as a user runs it; throughput etc. from metrics.jsonl, first interval excluded."""
  w = workloads.WORKLOADS[name]
  with tempfile.TemporaryDirectory() as workdir:
    cmd = [sys.executable, "-m", "launch.train", f"--config={w['config']}", f"--workdir={workdir}",
           f"--config.train.steps_per_call={steps_per_call}", "--config.train.progress_bar=False"]
    out, err, foreign = run(cmd, JEMALLOC if jemalloc else None)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      recs = [json.loads(l) for l in f if '"split": "train"' in l]
  steps = [b["step"] - a["step"] for a, b in zip(recs, recs[1:])]
  recs = recs[1:]
  secs = [n * w["batch"] / r["examples_per_second"] for n, r in zip(steps, recs)]
  total = sum(secs)
  result = dict(examples_per_s=sum(steps) * w["batch"] / total,
                input_wait=sum(r["input_wait_fraction"] * s for r, s in zip(recs, secs)) / total,
                ckpt_block=sum(r["checkpoint_block_seconds"] for r in recs) / total,
                foreign=foreign)  # compile time: the bare step's row (the same jitted function)
  if all("mfu" in r for r in recs):
    result["mfu"] = sum(r["mfu"] * s for r, s in zip(recs, secs)) / total
  return result


def module(mod, *args, jemalloc=False):
  out, _, foreign = run([sys.executable, "-m", mod, *args], JEMALLOC if jemalloc else None)
  r = json_line(out)
  r.pop("impl", None)
  return {**r, "foreign": foreign}


def torch(name, python, bench_dir):
  args = workloads.WORKLOADS[name]["torch"]
  out, _, foreign = run([python, args[0], *args[1:]], cwd=bench_dir)
  r = json_line(out)
  return dict(examples_per_s=r["examples_per_s"], compile_s=r["compile_s"], foreign=foreign)


def peak():
  out, _, foreign = run([sys.executable, "-c", "from trainer import flops; print(flops.measured_cpu_peak())"])
  return dict(flops=float(out.split()[-1]), foreign=foreign)
