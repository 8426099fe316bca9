"""Device peak FLOP/s, XLA's FLOP count of a step, and model FLOP utilisation (MFU).

A peak says where it comes from (`Peak.source`): the per-chip table below for accelerators; on CPU the
fastest matmul this machine has been measured to run (`cpu_peak`), so that MFU stays at most 1.

A model may declare its own analytic count (`flops_per_example` beside it in models/; convention: FLOPs =
2 x the multiply-accumulates of matmuls and convolutions, a training step 3 x forward, as in
shared/bench/common.py); otherwise the trainer uses XLA's count of the compiled step.
"""
import dataclasses
import functools
import json
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp


# Dense (no sparsity) peak FLOP/s per chip, keyed by a substring of jax.devices()[0].device_kind; the first
# match wins, so specific names come first. 'float32' is the rate of float32 matmuls at JAX's default
# precision: TF32 tensor cores on A100/H100/H200, bf16 passes on TPU (so TPUs list bfloat16 only).
PEAK_FLOPS = {
  "TPU v6 lite": {"bfloat16": 918e12},  # v6e (Trillium)
  "TPU v5 lite": {"bfloat16": 197e12},  # v5e
  "TPU v5": {"bfloat16": 459e12},  # v5p ("TPU v5" or "TPU v5p")
  "TPU v4": {"bfloat16": 275e12},
  "H200": {"bfloat16": 989e12, "float32": 494.5e12},
  "H100 PCIe": {"bfloat16": 756e12, "float32": 378e12},
  "H100": {"bfloat16": 989e12, "float32": 494.5e12},  # SXM
  "A100": {"bfloat16": 312e12, "float32": 156e12},
}


def device_peak_flops(device_kind, dtype="bfloat16"):
  """Per-chip peak for a device_kind string, or None if unknown."""
  for name, peaks in PEAK_FLOPS.items():
    if name.lower() in device_kind.lower():
      return peaks.get(dtype, peaks.get("bfloat16"))
  return None


@dataclasses.dataclass(frozen=True)
class Peak:
  """A peak FLOP/s and where it comes from (train records carry both: `peak_flops`, `peak_source`)."""
  flops: float
  source: str


@functools.lru_cache(maxsize=None)
def measured_cpu_peak(n=2048, reps=10):
  """FLOP/s of the fastest of `reps` timings of a jitted float32 n x n matmul on the host CPU (all cores).

  The fastest, not the median: other processes on a shared machine only ever slow a timing down, so the
  fastest is the one closest to what the cores can do.
  """
  cpu = jax.devices("cpu")[0]
  a = jax.device_put(jnp.ones((n, n), jnp.float32), cpu)
  f = jax.jit(jnp.matmul)
  for _ in range(2):  # compile + warm up
    f(a, a).block_until_ready()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    f(a, a).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * n**3 / min(times)


def cpu_peak_cache() -> pathlib.Path:
  """Where the host's best measured peak is kept: $FLAXFORGE_CPU_PEAK_CACHE, else
  ${XDG_CACHE_HOME:-~/.cache}/flaxforge/cpu_peak.json."""
  if os.environ.get("FLAXFORGE_CPU_PEAK_CACHE"):
    return pathlib.Path(os.environ["FLAXFORGE_CPU_PEAK_CACHE"]).expanduser()
  return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "flaxforge" / "cpu_peak.json"


def _host() -> str:
  """The machine a CPU peak belongs to: the CPU model, the cores this process may use, the jax version."""
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), model)
  except OSError:
    pass
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return f"{model}, {cores} cores, jax {jax.__version__}"


# How much quieter (1-minute load average, in busy cores) a start must be than every earlier measurement on this
# host before it measures the peak again: a busier start could only measure a lower one.
QUIETER = 0.5


def cpu_peak() -> Peak:
  """The host's matmul peak, measured once per machine and kept with its provenance (`cpu_peak_cache`, keyed
  by `_host()`): a start measures (`measured_cpu_peak`, about a second of both cores) only when nothing is
  kept for this host, or when its 1-minute load average is at least QUIETER below that of every earlier
  measurement; the best measurement is kept. So a start-up on a loaded machine neither lowers the peak that MFU
  divides by (a low peak made MFU exceed 1) nor pays for a measurement that could not raise it. The cache is
  written to a temporary file and renamed; one that cannot be read or written is measured over or left
  alone. Delete it to measure again."""
  host, path = _host(), cpu_peak_cache()
  try:
    cached = json.loads(path.read_text())
  except (OSError, ValueError):
    cached = {}
  cached = cached if isinstance(cached, dict) else {}
  best = cached.get(host)
  best = best if isinstance(best, dict) and isinstance(best.get("flops"), (int, float)) else None
  load = _load_average()
  quietest = best.get("quietest_load", best.get("load_average")) if best else None
  if best is None or (load is not None and isinstance(quietest, (int, float)) and load <= quietest - QUIETER):
    now = measured_cpu_peak()
    if best is None or now > best["flops"]:
      best = {"flops": now, "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_average": load}
    best = {**best, "quietest_load": min((x for x in (load, quietest) if x is not None), default=None)}
    try:
      path.parent.mkdir(parents=True, exist_ok=True)
      tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
      tmp.write_text(json.dumps({**cached, host: best}, indent=1))
      os.replace(tmp, path)
    except OSError:
      pass
  return Peak(best["flops"], f"host matmul peak: fastest jitted 2048x2048 float32 matmul measured on {host}, "
                             f"{best.get('measured', '?')} (1-minute load average {best.get('load_average', '?')}), kept in {path}")


def _load_average() -> float | None:
  return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def system_peak(dtype="bfloat16", devices=None) -> Peak | None:
  """Peak of all `devices` together (default jax.devices()), or None if unknown.

  On CPU, fake devices share the host's cores, so the host's peak (`cpu_peak`) is returned once, not
  multiplied by the device count. Accelerators: the per-chip table above times the device count.
  """
  devices = devices or jax.devices()
  if devices[0].platform == "cpu":
    return cpu_peak()
  per_chip = device_peak_flops(devices[0].device_kind, dtype)
  if per_chip is None:
    return None
  return Peak(per_chip * len(devices), f"{len(devices)} x {devices[0].device_kind} {dtype} "
                                       "(trainer/flops.py PEAK_FLOPS)")


def mfu(flops_per_second, peak):
  """Model FLOP utilisation: achieved / peak (None if the peak is unknown)."""
  return flops_per_second / peak if peak else None


def xla_flops(stage):
  """XLA's FLOP count for a jax.jit(...).lower(...) or .compile() result, NaN if unavailable.

  A Lowered stage counts the whole unpartitioned program (no compile needed); a Compiled one counts the
  optimised program, per device if it is partitioned. cost_analysis() is a dict in current jax, a list of
  per-program dicts in older ones.
  """
  cost = stage.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost.get("flops", float("nan"))) if cost else float("nan")
