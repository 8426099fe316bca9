"""Device peak FLOP/s, XLA's FLOP count of a step, and model FLOP utilisation (MFU).

A model may declare its own analytic count (`flops_per_example` beside it in models/; convention: FLOPs =
2 x the multiply-accumulates of matmuls and convolutions, a training step 3 x forward, as in
shared/bench/common.py); otherwise the trainer uses XLA's count of the compiled step.
"""
import functools
import statistics
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


@functools.lru_cache(maxsize=None)
def measured_cpu_peak(n=2048, reps=10):
  """Median FLOP/s of a jitted float32 n x n matmul on the host CPU (all cores)."""
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
  return 2 * n**3 / statistics.median(times)


def system_peak_flops(dtype="bfloat16", devices=None):
  """Peak of all `devices` together (default jax.devices()), or None if unknown.

  On CPU, fake devices share the host's cores, so the measured host peak is returned once, not multiplied
  by the device count.
  """
  devices = devices or jax.devices()
  if devices[0].platform == "cpu":
    return measured_cpu_peak()
  per_chip = device_peak_flops(devices[0].device_kind, dtype)
  return None if per_chip is None else per_chip * len(devices)


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
