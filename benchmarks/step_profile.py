"""Where a workload's train step spends its time on XLA:CPU: the bare step (benchmarks/bare_step.py's
set-up) traced with jax.profiler for a few steps, each thunk matched to its instruction in the optimized HLO,
summed by kind (YNNPACK dot fusions, element-wise fusions, ...) and output shape. Milliseconds per step of
the thread that ran each thunk; a dot fusion also keeps the other core busy, so its time is wall time.

  python -m benchmarks.step_profile --workload minilm_20ng [--steps 2] [--top 25]
"""
import argparse
import collections
import glob
import os
import re
import tempfile

import jax
import numpy as np

from benchmarks import workloads
from flaxforge.trainer import mesh as mesh_lib, run_data, state as state_lib, steps as steps_lib


def _hlo_shapes(dump_dir: str) -> dict:
  """Instruction name -> its output shape, from the train step's optimized HLO."""
  (path,) = glob.glob(os.path.join(dump_dir, "*jit_train_step*cpu_after_optimizations.txt"))[:1]
  shapes = {}
  for line in open(path):
    m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (\S+)", line)
    if m:
      shapes.setdefault(m.group(1), m.group(2).split("{")[0])
  return shapes


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--workload", required=True)
  p.add_argument("--steps", type=int, default=2)
  p.add_argument("--top", type=int, default=25)
  args = p.parse_args()
  dump_dir = tempfile.mkdtemp(prefix="flaxforge-hlo-")
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={dump_dir} --xla_dump_hlo_as_text"
  w, config = workloads.WORKLOADS[args.workload], workloads.config(args.workload)
  mesh = mesh_lib.make_mesh(config.mesh)
  data = run_data.load_data(config)
  structure, create = state_lib.structure(config, data.info, mesh, 10**6)
  state, sums = create(), steps_lib.train_metrics_init(mesh)
  step = steps_lib.make_train_step(structure, mesh, loss_kind=config.loss)
  n, batch = args.steps + 2, w["batch"]
  host = data.rows["train"].take(np.arange(n * batch))
  host["mask"] = np.ones(n * batch, np.float32)
  host = data.transform(host) if data.transform else host
  sharding = mesh_lib.batch_sharding(mesh)
  calls = [jax.device_put({k: v[i * batch:(i + 1) * batch] for k, v in host.items()}, sharding) for i in range(n)]
  leaves = jax.tree.leaves(state)
  for i, b in enumerate(calls):
    if i == 2:
      jax.block_until_ready(sums)
      trace_dir = tempfile.mkdtemp(prefix="flaxforge-trace-")
      jax.profiler.start_trace(trace_dir)
    leaves, sums = step.on_leaves(leaves, sums, b, {})
  jax.block_until_ready(sums)
  jax.profiler.stop_trace()

  shapes = _hlo_shapes(dump_dir)
  (trace,) = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)[:1]
  kinds = collections.Counter()
  for plane in jax.profiler.ProfileData.from_file(trace).planes:
    for line in plane.lines:
      if not line.name.startswith("tf_XLAEigen"):  # XLA:CPU's worker threads
        continue
      for event in line.events:
        if event.name.startswith(("ThunkExecutor", "SlinkyThreadPool", "ThreadpoolListener")):
          continue
        kind = re.sub(r"\.\d+$", "", event.name)
        kinds[(kind, shapes.get(event.name, "?"))] += event.duration_ns / 1e6 / args.steps
  total = sum(kinds.values())
  print(f"{total:8.1f} ms per step in traced thunks ({args.steps} steps of workload {args.workload})")
  for (kind, shape), ms in kinds.most_common(args.top):
    print(f"{ms:8.1f} ms  {kind:32s} {shape}")


if __name__ == "__main__":
  main()
