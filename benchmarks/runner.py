"""Runs one measurement in its own process and records what else the machine was doing meanwhile."""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from benchmarks import workloads

# Our processes pick their malloc themselves (launch/allocator.py: glibc huge pages unless FLAXFORGE_MALLOC
# says otherwise); these environments pin one for a comparison. "jemalloc" also works for the references.
MALLOC = {
    "system": {"FLAXFORGE_MALLOC": "system"},
    "hugetlb": {"FLAXFORGE_MALLOC": "system", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
    "jemalloc": {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
                 "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"},
}


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


def trainer(name, steps_per_call=None, malloc=None, checkout=None, **overrides):
  """`python -m flaxforge.launch.train` as a user runs it; throughput etc. from metrics.jsonl, first interval excluded.
  `wall_s`: the whole process; `first_epoch_s`: training time (no validation) up to the first epoch's end,
  compilation included; `epoch_s`: an epoch at the steady throughput. steps_per_call: the config's unless given.
  `checkout`: another checkout of this repository (with its own .venv) to run instead, for comparing commits;
  one from before the flaxforge namespace runs `launch.train`."""
  w = workloads.WORKLOADS[name]
  spc = [] if steps_per_call is None else [f"--config.train.steps_per_call={steps_per_call}"]
  python, module, cwd, env = sys.executable, "flaxforge.launch.train", workloads.REPO, dict(MALLOC.get(malloc, {}))
  if checkout:
    python, cwd, env["PYTHONPATH"] = os.path.join(checkout, ".venv", "bin", "python"), checkout, checkout
    if not os.path.exists(os.path.join(checkout, "__init__.py")):
      module = "launch.train"
  with tempfile.TemporaryDirectory() as workdir:
    cmd = [python, "-m", module, f"--config={w['config']}", f"--workdir={workdir}",
           *spc, "--config.train.progress_bar=False",
           *workloads.flags(name, **overrides)]
    t = time.time()
    out, err, foreign = run(cmd, env, cwd=cwd)
    wall = time.time() - t
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      recs = [json.loads(l) for l in f if '"split": "train"' in l]
  steps = [b["step"] - a["step"] for a, b in zip([{"step": 0}] + recs, recs)]
  secs = [n * w["batch"] / r["examples_per_second"] for n, r in zip(steps, recs)]
  epoch_end = next((i for i, r in enumerate(recs) if r["epoch"] >= 1.0 - 1e-9), None)
  first_epoch = sum(secs[:epoch_end + 1]) if epoch_end is not None else None
  steps, recs, secs = steps[1:], recs[1:], secs[1:]
  total = sum(secs)
  eps = sum(steps) * w["batch"] / total if total else None
  spe = recs[0]["step"] / recs[0]["epoch"] if recs else None  # steps per epoch
  result = dict(examples_per_s=eps, wall_s=wall, first_epoch_s=first_epoch,
                epoch_s=spe * w["batch"] / eps if eps else None,
                input_wait=sum(r["input_wait_fraction"] * s for r, s in zip(recs, secs)) / total,
                ckpt_block=sum(r["checkpoint_block_seconds"] for r in recs) / total,
                foreign=foreign)  # compile time: the bare step's row (the same jitted function)
  if all("mfu" in r for r in recs):
    result["mfu"] = sum(r["mfu"] * s for r, s in zip(recs, secs)) / total
  return result


def module(mod, *args, malloc=None):
  out, _, foreign = run([sys.executable, "-m", mod, *args], MALLOC.get(malloc))
  r = json_line(out)
  r.pop("impl", None)
  return {**r, "foreign": foreign}


def reference(name, kind, python, bench_dir, malloc=None):
  """A /work/shared/bench script (kind 'torch' or 'keras'); `first_epoch_s` = its warm-up epoch."""
  args = workloads.WORKLOADS[name][kind]
  out, _, foreign = run([python, args[0], *args[1:]], MALLOC.get(malloc), cwd=bench_dir)
  r = json_line(out)
  steady = sorted(r["epoch_s"])[len(r["epoch_s"]) // 2]
  return dict(examples_per_s=r["examples_per_s"], compile_s=r["compile_s"], foreign=foreign,
              epoch_s=steady, examples_per_epoch=r["examples_per_epoch"],
              first_epoch_s=steady + (r["compile_s"] or 0.0))


def peak():
  out, _, foreign = run([sys.executable, "-c", "from flaxforge.trainer import flops; print(flops.measured_cpu_peak())"])
  return dict(flops=float(out.split()[-1]), foreign=foreign)
