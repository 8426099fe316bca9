"""flaxforge's training throughput beside the PyTorch and Keras references, alternating, one process per run.

  PYTHONPATH=. .venv/bin/python -m benchmarks.run --rounds 3 --out /tmp/bench.jsonl
      [--workloads mlp,text_cnn,transformer,text_cnn_20ng] [--impls trainer,bare step,...] [--malloc system,hugetlb]
      [--torch_python /work/venvs/torch/bin/python] [--keras_python /work/venvs/tf/bin/python]
      [--bench_dir /work/shared/bench] [--no_pipeline] [--no_peak]

Per workload and round it measures, in a rotating order: the trainer through `flaxforge.launch.train` (steps_per_call 1
and, for the small models, 8), the bare jitted step on device-resident data, the input pipeline alone, the
PyTorch eager and Keras `fit` references (with --malloc also trainer and step pinned to those mallocs);
once per round the machine's matmul peak. Then it prints the markdown table
(benchmarks/report.py) for BENCHMARKS.md. Compare ratios within one run only: the machine is shared.
"""
import argparse
import functools
import json
import os
import platform

from benchmarks import records, report, runner, workloads

# steps_per_call tried besides 1 (a divisor of the config's log_every: calls never cross a log boundary)
SCAN = {"mlp": 8, "text_cnn": 8, "transformer": 5, "text_cnn_20ng": 4}


def impls(name, args):
  w = workloads.WORKLOADS[name]
  out = {"trainer": lambda: runner.trainer(name),
         "bare step": lambda: runner.module("benchmarks.bare_step", "--workload", name)}
  if not args.no_pipeline:
    out["input pipeline"] = lambda: runner.module("benchmarks.pipeline_speed", "--workload", name)
  if SCAN.get(name):
    k, default = SCAN[name], workloads.config(name).train.steps_per_call  # "trainer" runs the config's
    for n in sorted({1, k} - {default}):
      out[f"trainer spc={n}"] = functools.partial(runner.trainer, name, steps_per_call=n)
    out[f"bare step spc={k}"] = lambda: runner.module("benchmarks.bare_step", "--workload", name,
                                                      "--steps_per_call", str(k))
  if name == "text_cnn_20ng":  # issue 3: one epoch as a user runs it (validation, checkpoint and test included)
    out["trainer 1 epoch"] = lambda: runner.trainer(name, **{"train.num_steps": 0, "train.num_epochs": 1})
  for m in args.malloc.split(",") if args.malloc else []:
    out[f"trainer malloc={m}"] = functools.partial(runner.trainer, name, malloc=m)
    out[f"bare step malloc={m}"] = functools.partial(runner.module, "benchmarks.bare_step", "--workload", name,
                                                     malloc=m)
  if w.get("torch") and os.path.exists(args.torch_python):
    out["torch eager"] = lambda: runner.reference(name, "torch", args.torch_python, args.bench_dir)
    if "jemalloc" in args.malloc.split(","):
      out["torch eager malloc=jemalloc"] = lambda: runner.reference(name, "torch", args.torch_python,
                                                                    args.bench_dir, malloc="jemalloc")
  if w.get("keras") and os.path.exists(args.keras_python):
    out["keras fit"] = lambda: runner.reference(name, "keras", args.keras_python, args.bench_dir)
  if args.impls:
    out = {k: v for k, v in out.items() if k in args.impls.split(",")}
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--workloads", default="mlp,text_cnn,transformer")
  p.add_argument("--out", default="/tmp/flaxforge-bench.jsonl")
  p.add_argument("--torch_python", default="/work/venvs/torch/bin/python")
  p.add_argument("--keras_python", default="/work/venvs/tf/bin/python")
  p.add_argument("--bench_dir", default="/work/shared/bench")
  p.add_argument("--impls", default="", help="comma-separated subset of the implementations, e.g. 'trainer,bare step'")
  p.add_argument("--no_pipeline", action="store_true", help="skip the input-pipeline-alone rows")
  p.add_argument("--no_peak", action="store_true", help="skip the matmul peak")
  p.add_argument("--malloc", default="", help="also run trainer and step pinned to these of runner.MALLOC, "
                 "e.g. 'system,hugetlb' (by default they pick one themselves: launch/allocator.py)")
  args = p.parse_args()
  names = [n for n in args.workloads.split(",") if n in workloads.WORKLOADS]
  def record(r):
    records.append(args.out, [r])  # each record whole, as soon as it is measured
    print(json.dumps(r), flush=True)
  record({**records.machine(), "python": platform.python_version()})
  for rnd in range(args.rounds):
    if not args.no_peak:
      record({"round": rnd, "workload": "peak", "impl": "matmul 2048", **runner.peak()})
    for name in names:
      todo = list(impls(name, args).items())
      shift = rnd % len(todo)
      for impl, fn in todo[shift:] + todo[:shift]:
        try:
          record({"round": rnd, "workload": name, "impl": impl, **fn()})
        except Exception as e:  # pylint: disable=broad-except  (one failed run must not lose the others)
          record({"round": rnd, "workload": name, "impl": impl, "error": str(e)[-500:]})
  print(report.table(args.out))
  print()
  print(report.epochs(args.out))


if __name__ == "__main__":
  main()
