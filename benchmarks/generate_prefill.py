"""How long `Sampler.sample` (flaxforge generate and serving's completions) takes for a prompt of 16, 128 and
512 tokens and 16 new ones, greedy, on a random GPT (4 layers, width 256, learned positions, max_len 1024,
byte vocabulary): the median of 5 calls after a warm-up compile, milliseconds. With --base, the same against
another commit's inference/sampling.py, alternating which side runs first (the machine is shared and drifts,
so only ratios measured side by side count).

  git show bfff872:trainer/sampling.py > /tmp/sampling_base.py   # the sampler before prefill
  nice -n 19 .venv/bin/python -m benchmarks.generate_prefill --base /tmp/sampling_base.py --rounds 3 \
      --out benchmarks/results/generate_prefill_<date>.jsonl

Prints (and with --out records) one JSON line per (round, prompt, side) and, with --base, one per (round,
prompt) with the ratio base / this, measured side by side.
"""
import argparse
import importlib.util
import json
import statistics
import time

from flax import nnx

from benchmarks import records
from flaxforge.inference import sampling
from flaxforge.models import gpt, transformer

MAX_TOKENS = 16


def _load(path):
  spec = importlib.util.spec_from_file_location("sampling_base", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _median_ms(sampler, prompt, repeats):
  sampler.sample(prompt, MAX_TOKENS, temperature=0, stop_at_eos=False)  # compiles
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    sampler.sample(prompt, MAX_TOKENS, temperature=0, stop_at_eos=False)  # returns lists: the work is done
    times.append(time.perf_counter() - start)
  return 1000 * statistics.median(times)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--base", default="", help="another commit's inference/sampling.py")
  p.add_argument("--prompts", default="16,128,512")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--rounds", type=int, default=1)
  p.add_argument("--out", default="")
  args = p.parse_args()
  arch = transformer.arch_from_config({"size": "small", "position": "learned", "max_len": 1024},
                                      {"vocab_size": 256, "seq_len": 1024})
  model = gpt.GPT(arch, rngs=nnx.Rngs(0))
  model.eval()
  sides = [("this", sampling)] + ([("base", _load(args.base))] if args.base else [])
  rows = []

  def record(row):
    rows.append({**row, **records.machine()})
    print(json.dumps(rows[-1]), flush=True)

  samplers = {side: module.Sampler(model, {"type": "bytes", "separator": 0}, 1024) for side, module in sides}
  prompts = [int(x) for x in args.prompts.split(",")]
  for rnd in range(args.rounds):
    for i, n in enumerate(prompts):
      prompt = [1 + j % 255 for j in range(n)]
      ms = {}
      for side, _ in (sides if (rnd + i) % 2 == 0 else sides[::-1]):  # alternate which runs first
        ms[side] = _median_ms(samplers[side], prompt, args.repeats)
        record({"round": rnd, "prompt_tokens": n, "max_tokens": MAX_TOKENS, "side": side,
                "median_ms": round(ms[side], 1), "repeats": args.repeats})
      if args.base:
        record({"round": rnd, "prompt_tokens": n, "base_over_this": round(ms["base"] / ms["this"], 2)})
  if args.out:
    records.append(args.out, rows)


if __name__ == "__main__":
  main()
