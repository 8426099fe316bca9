"""This checkout's training throughput against another commit's, alternating in one run (the machine is
shared and drifts, so only ratios measured side by side count).

  git worktree add --detach /tmp/base COMMIT && (cd /tmp/base && python3 -m venv .venv && .venv/bin/pip install -e .)
  PYTHONPATH=. .venv/bin/python -m benchmarks.ab_commits --base /tmp/base --rounds 3 \
      --workloads text_cnn_20ng,mlp --out benchmarks/results/ab.jsonl

Prints one JSON line per run and, at the end, each workload's median examples/s per side and their ratio.
"""
import argparse
import json
import platform
import statistics

from benchmarks import records, runner


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--base", required=True, help="the other checkout, with its own .venv")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--workloads", default="text_cnn_20ng,mlp")
  p.add_argument("--out", default="")
  args = p.parse_args()
  results = {}
  for r in range(args.rounds):
    for name in args.workloads.split(","):
      sides = [("this", None), ("base", args.base)]
      for side, checkout in (sides if r % 2 == 0 else sides[::-1]):  # alternate which runs first
        result = dict(round=r, workload=name, side=side, machine=platform.processor() or platform.machine(),
                      **runner.trainer(name, checkout=checkout))
        results.setdefault((name, side), []).append(result["examples_per_s"])
        print(json.dumps(result), flush=True)
        if args.out:
          records.append(args.out, [result])
  for name in args.workloads.split(","):
    this, base = (statistics.median(results[(name, s)]) for s in ("this", "base"))
    print(f"{name}: this {this:.0f} examples/s, base {base:.0f}, ratio {this / base:.3f}")


if __name__ == "__main__":
  main()
