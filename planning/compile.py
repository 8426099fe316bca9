"""Lowering and compiling an abstract run's train step for its target, and what the compiler says about it.

The TPU compiler refuses a program that does not fit (RESOURCE_EXHAUSTED: Ran out of memory on HBM ...), as
the hardware would: that is a verdict, not a crash. XLA:GPU only logs a warning, so the plan compares the
peak with the chip's memory itself (planning/report.py), on both platforms.
"""
import contextlib
import dataclasses
import time
from unittest import mock

import jax

from flaxforge.planning.abstract import AbstractRun

_OUT_OF_MEMORY = ("RESOURCE_EXHAUSTED", "Ran out of memory")


@dataclasses.dataclass
class Program:
  """One device's compiled step: its memory (`compiled.memory_analysis()`, bytes), XLA's cost (FLOPs and
  bytes accessed per device; a loop body counted once), HLO text, compile seconds; or the refusal."""
  seconds: float
  memory: object = None
  cost: dict = dataclasses.field(default_factory=dict)
  hlo: str = ""
  refused: str = ""  # the compiler's out-of-memory message, when it refused the program


@contextlib.contextmanager
def traced_for(platform: str):
  """Models choose CPU-tuned code from `jax.default_backend()` while they are traced (models/matmul.py's
  weight gradient, models/transformer.py's per-head attention); planning runs on the CPU backend, so while
  a step is traced for a target they are shown the target's platform and trace what `train` traces there."""
  with mock.patch.object(jax, "default_backend", lambda: platform):
    yield


def compile_step(run: AbstractRun, platform: str) -> Program:
  """Compiles `run`'s train step for its mesh's devices (`platform`: tpu or gpu)."""
  start = time.perf_counter()
  with traced_for(platform):
    lowered = run.step.lower(*run.args)
  try:
    compiled = lowered.compile()
  except Exception as e:  # pylint: disable=broad-except  (jax raises JaxRuntimeError; only OOM is a verdict)
    if not any(marker in str(e) for marker in _OUT_OF_MEMORY):
      raise
    line = next((l for l in str(e).splitlines() if any(m in l for m in _OUT_OF_MEMORY)), str(e))
    return Program(time.perf_counter() - start, refused=line.strip())
  return Program(time.perf_counter() - start, compiled.memory_analysis(), _cost(compiled), compiled.as_text())


def _cost(compiled) -> dict:
  """XLA's per-device cost analysis ({} when unavailable). Compile-only GPU executables answer None; XLA's
  HloCostAnalysis over their optimised module still works through jaxlib (a private API, hence the guard)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
  if not cost:
    try:
      from jax._src.lib import _jax  # pylint: disable=import-outside-toplevel,protected-access
      module = compiled.runtime_executable().hlo_modules()[0]
      cost = _jax.hlo_module_cost_analysis(jax.devices("cpu")[0].client, module)
    except Exception:  # pylint: disable=broad-except  (an estimate's input: its absence is reported)
      cost = {}
  return {k: float(cost[k]) for k in ("flops", "bytes accessed") if k in (cost or {})}
