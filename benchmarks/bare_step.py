"""The ceiling for a workload: the trainer's own jitted step (trainer.state + trainer.steps) looped over
batches already on the devices, no input pipeline, metrics or checkpoints. Prints one JSON line.

python -m benchmarks.bare_step --workload mlp [--steps_per_call 4] [--epochs 3] [--steps 100] [--set model.dropout=0.0]
"""
import argparse
import ast
import json
import statistics
import time

import jax
import numpy as np

from benchmarks import workloads
from flaxforge.launch import allocator, common
from flaxforge.trainer import mesh as mesh_lib, run_data, state as state_lib, steps as steps_lib


def _override(text):
  key, value = text.split("=", 1)
  try:
    return key, ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key, value


def main():
  allocator.reexec_once()  # the trainer's malloc set-up, as flaxforge.launch.train has it
  p = argparse.ArgumentParser()
  p.add_argument("--workload", required=True)
  p.add_argument("--steps_per_call", type=int, default=1)
  p.add_argument("--epochs", type=int, default=2)
  p.add_argument("--steps", type=int, default=0, help="steps per timed 'epoch' (default: the workload's)")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="a dotted config override, as a Python literal: --set model.dropout=0.0")
  args = p.parse_args()
  w = workloads.WORKLOADS[args.workload]
  spc = args.steps_per_call
  config = workloads.config(args.workload, **dict(_override(kv) for kv in args.set))
  allocator.reexec_once(config.get("malloc", "auto"))  # as flaxforge.launch.train does, before JAX starts
  common.use_xla_flags(config.get("xla_flags", ""))
  mesh = mesh_lib.make_mesh(config.mesh)
  data = run_data.load_data(config)
  rows, transform = data.rows["train"], data.transform
  batch, n_steps = w["batch"], (args.steps or w["epoch_steps"]) // spc * spc
  structure, create = state_lib.structure(config, data.info, mesh, 10**6)
  state, sums = create(), steps_lib.train_metrics_init(mesh)
  step = steps_lib.make_train_step(structure, mesh, loss_kind=config.loss, steps_per_call=spc)

  host = rows.take(np.random.default_rng(0).permutation(len(rows))[:n_steps * batch])
  host["mask"] = np.ones(n_steps * batch, np.float32)
  host = transform(host) if transform else host
  shape = (n_steps // spc, batch) if spc == 1 else (n_steps // spc, spc, batch)
  sharding = mesh_lib.batch_sharding(mesh, leading_axes=int(spc > 1))
  calls = [jax.device_put({k: v.reshape(shape + v.shape[1:])[i] for k, v in host.items()}, sharding)
           for i in range(shape[0])]

  t = time.perf_counter()
  step.lower(state, sums, calls[0]).compile()  # jit reuses this executable (tests/test_compile_count.py)
  compile_s = time.perf_counter() - t

  leaves = jax.tree.leaves(state)  # as the loop carries it (trainer/steps.py TrainStep)

  def epoch():
    nonlocal leaves, sums
    t = time.perf_counter()
    for b in calls:
      leaves, sums = step.on_leaves(leaves, sums, b, {})
    jax.block_until_ready(sums)
    return time.perf_counter() - t

  epoch()  # warm-up
  times = [epoch() for _ in range(args.epochs)]
  eps = n_steps * batch / statistics.median(times)
  print(json.dumps(dict(workload=args.workload, impl=f"bare step spc={spc}", overrides=args.set, examples_per_s=eps,
                        compile_s=compile_s, epoch_s=times)), flush=True)


if __name__ == "__main__":
  main()
