"""Medians of a benchmarks/run.py results file as the markdown table of BENCHMARKS.md.

python -m benchmarks.report /tmp/flaxforge-bench.jsonl
"""
import collections
import json
import statistics
import sys

from benchmarks import workloads


def _med(values):
  values = [v for v in values if v is not None]
  return statistics.median(values) if values else None


def table(path: str) -> str:
  rows = [json.loads(l) for l in open(path)]
  runs = collections.defaultdict(list)
  for r in rows:
    if "impl" in r and "error" not in r:
      runs[(r["workload"], r["impl"])].append(r)
  peak = _med([r["flops"] for r in runs.pop(("peak", "matmul 2048"), [])])
  lines = [f"Matmul peak (2048x2048 float32, jitted, median of rounds): {peak / 1e9:.0f} GFLOP/s" if peak else "",
           "",
           "| workload | implementation | runs | examples/s (median) | vs bare step | vs torch eager | vs keras fit |"
           " tokens/s | MFU (analytic) | MFU (trainer, XLA count) | compile s | input wait | ckpt blocking |"
           " other load |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for (name, impl), rs in sorted(runs.items(), key=lambda kv: (kv[0][0], kv[0][1])):
    w = workloads.WORKLOADS.get(name, {})
    eps = _med([r["examples_per_s"] for r in rs])
    ratio = _paired_ratio(rs, runs.get((name, "bare step"), []))
    is_train = impl != "input pipeline"
    cells = [name, impl, str(len(rs)), f"{eps:,.0f}",
             f"{ratio:.2f}x" if ratio and impl != "bare step" else ("" if impl != "bare step" else "1.00x"),
             _fmt(_paired_ratio(rs, runs.get((name, "torch eager"), [])) if impl not in ("torch eager", "input pipeline") else None,
                  "{:.2f}x"),
             _fmt(_paired_ratio(rs, runs.get((name, "keras fit"), [])) if impl not in ("keras fit", "input pipeline") else None,
                  "{:.2f}x"),
             f"{eps * w['seq_len']:,.0f}" if w.get("seq_len") and is_train else "",
             f"{eps * w['flops'] / peak:.1%}" if peak and is_train else "",
             _fmt(_med([r.get("mfu") for r in rs]), "{:.1%}"),
             _fmt(_med([r.get("compile_s") for r in rs]), "{:.2f}"),
             _fmt(_med([r.get("input_wait") for r in rs]), "{:.1%}"),
             _fmt(_med([r.get("ckpt_block") for r in rs]), "{:.2%}"),
             _fmt(_med([r.get("foreign") for r in rs]), "{:.0%}")]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def epochs(path: str) -> str:
  """Seconds per epoch: steady (examples per epoch / steady throughput) and the first epoch (compile
  included); for the trainer also the whole `flaxforge.launch.train` process."""
  rows = [json.loads(l) for l in open(path)]
  runs = collections.defaultdict(list)
  for r in rows:
    if isinstance(r.get("epoch_s"), float) and "error" not in r:
      runs[(r["workload"], r["impl"])].append(r)
  lines = ["| workload | implementation | runs | examples/epoch | s/epoch, steady (median) | first epoch s |"
           " whole process s | other load |", "|---|---|---|---|---|---|---|---|"]
  for (name, impl), rs in sorted(runs.items()):
    per = rs[0].get("examples_per_epoch") or rs[0]["epoch_s"] * rs[0]["examples_per_s"]
    cells = [name, impl, str(len(rs)), f"{per:,.0f}", _fmt(_med([r["epoch_s"] for r in rs]), "{:.2f}"),
             _fmt(_med([r.get("first_epoch_s") for r in rs]), "{:.2f}"),
             _fmt(_med([r.get("wall_s") for r in rs]), "{:.1f}"), _fmt(_med([r.get("foreign") for r in rs]), "{:.0%}")]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def _paired_ratio(rs, base):
  """Median over rounds of (this / bare step in the same round): robust to the machine's drift."""
  by_round = {r["round"]: r["examples_per_s"] for r in base}
  ratios = [r["examples_per_s"] / by_round[r["round"]] for r in rs if r["round"] in by_round]
  return _med(ratios)


def _fmt(v, f):
  return "" if v is None else f.format(v)


if __name__ == "__main__":
  print(table(sys.argv[1]))
  print()
  print(epochs(sys.argv[1]))
