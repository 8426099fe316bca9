"""`flaxforge train` with one start-up phase held until a signal ends the run, so that a test can signal it
there: `python tests/held_start.py PHASE [train flags]`, PHASE one of
- data: the dataset's load, held in Python (as data preparation is Python code);
- compile: the train step's XLA compile, held in C++ by an endless XLA loop (as a real compile of minutes
  holds its thread without returning to Python);
- step: the first step's output, never ready.
It prints "holding PHASE" once there.
"""
import runpy
import sys
import time

import jax
from jax import lax
from jax._src import compiler

from flaxforge.trainer import run_data, steps

PHASE = sys.argv.pop(1)


@jax.jit
def _endless(x):
  return lax.while_loop(lambda i: i >= 0, lambda i: (i + 1) % 1000, x)  # never ends: i stays in [0, 1000)


if PHASE == "data":
  def _held_load(*args, **kwargs):
    print("holding data", flush=True)
    time.sleep(3600)
    return _real_load(*args, **kwargs)
  _real_load, run_data.load_data = run_data.load_data, _held_load
elif PHASE == "compile":
  def _held_compile(backend, module, *args, **kwargs):
    if "train_step" in str(module.operation.attributes["sym_name"]):
      print("holding compile", flush=True)
      with jax.transfer_guard("allow"):  # wherever the compile runs
        _endless(0).block_until_ready()
    return _real_compile(backend, module, *args, **kwargs)
  _endless(-1)  # compiled (and run: i < 0 ends at once) before any hold
  _real_compile, compiler.backend_compile_and_load = compiler.backend_compile_and_load, _held_compile
elif PHASE == "step":
  class _NeverReady:
    """A step output still being computed (XLA:CPU would run an endless loop inline, in the caller's thread)."""

    def is_ready(self):
      return False

  def _held_first_call(self, leaves, metrics, batch, shared):
    leaves, metrics = _real_call(self, leaves, metrics, batch, shared)
    print("holding step", flush=True)  # the loop waits for the first step's metrics, which never come
    return leaves, {**metrics, "held": _NeverReady()}
  _real_call, steps.TrainStep.on_leaves = steps.TrainStep.on_leaves, _held_first_call
else:
  raise SystemExit(f"unknown phase {PHASE!r}")

sys.argv[0] = "flaxforge train"
runpy.run_module("flaxforge.launch.train", run_name="__main__")
