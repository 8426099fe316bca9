"""Fine-tuning throughput, flaxforge against the transformers + PyTorch yardstick, alternating in one run:
MiniLM (../shared/models/all-MiniLM-L6-v2) on 20 Newsgroups, sequence 128, batch 32, float32, training
steps only (the first 5 steps, compilation included, not timed on either side).

  python -m benchmarks.finetune_throughput --rounds 3 [--lora_rank 8] [--out benchmarks/results/FILE.jsonl]

Each round runs `flaxforge train` (workload `minilm_20ng`: 65 steps, examples/s from metrics.jsonl after
the first 5-step interval), then `hf_finetune_ref.py --mode=throughput --threads=<cores>` (5 warm-up + 60
timed steps), then, with --lora_rank, the same flaxforge run with LoRA adapters. Prints one JSON line per
run and a final line with the medians and the median of the per-round ratios; --out records the same lines
(benchmarks/records.py: each written whole). The two sides alternate which goes first, round by round.
"""
import argparse
import json
import os
import statistics
import sys

from benchmarks import records, runner

BENCH = os.environ.get("BENCH_DIR", "/work/shared/bench")


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--lora_rank", type=int, default=0, help="> 0: also time a LoRA run of this rank each round")
  p.add_argument("--python", default=sys.executable, help="the interpreter with torch and transformers")
  p.add_argument("--out", default="")
  args = p.parse_args()
  rows = {"flaxforge": [], "reference": [], "flaxforge_lora": []}

  def reference():
    out, _, foreign = runner.run([args.python, "hf_finetune_ref.py", "--mode=throughput",
                                  f"--threads={os.cpu_count()}"], cwd=BENCH, timeout=1800)
    return {**runner.json_line(out), "foreign": foreign}

  def record(row):
    print(json.dumps(row), flush=True)
    if args.out:
      records.append(args.out, [row])

  for r in range(args.rounds):
    runs = [("flaxforge", lambda: runner.trainer("minilm_20ng")), ("reference", reference)]
    if args.lora_rank:
      runs.append(("flaxforge_lora", lambda: runner.trainer("minilm_20ng", **{"model.lora.rank": args.lora_rank})))
    for name, measure in runs if r % 2 == 0 else runs[::-1]:
      machine = records.machine()
      rows[name].append(measure())
      record({"round": r, "run": name, **machine, **rows[name][-1]})
  ratios = [a["examples_per_s"] / b["examples_per_s"] for a, b in zip(rows["flaxforge"], rows["reference"])]
  summary = {name: statistics.median(x["examples_per_s"] for x in v) for name, v in rows.items() if v}
  record({"median_examples_per_s": summary, "ratio_per_round": ratios, "median_ratio": statistics.median(ratios)})


if __name__ == "__main__":
  main()
