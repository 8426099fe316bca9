"""How long `Sampler.sample` (flaxforge generate and serving's completions) takes for a prompt of 16, 128 and
512 tokens and 16 new ones, greedy, on a random GPT (4 layers, width 256, learned positions, max_len 1024,
byte vocabulary): the median of 5 calls after a warm-up compile, milliseconds. With --base, the same against
another commit's inference/sampling.py, alternating which side runs first (the machine is shared and drifts,
so only ratios measured side by side count).

  git show HEAD~1:inference/sampling.py > /tmp/sampling_base.py
  nice -n 19 .venv/bin/python -m benchmarks.generate_prefill --base /tmp/sampling_base.py

Prints one JSON line per (prompt, side) and, with --base, one per prompt with the ratio base / this.
"""
import argparse
import importlib.util
import json
import platform
import statistics
import time

from flax import nnx

from flaxforge.models import gpt, transformer
from flaxforge.inference import sampling

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
  args = p.parse_args()
  arch = transformer.arch_from_config({"size": "small", "position": "learned", "max_len": 1024},
                                      {"vocab_size": 256, "seq_len": 1024})
  model = gpt.GPT(arch, rngs=nnx.Rngs(0))
  model.eval()
  sides = [("this", sampling)] + ([("base", _load(args.base))] if args.base else [])
  machine = platform.processor() or platform.machine()
  for r, n in enumerate(int(x) for x in args.prompts.split(",")):
    prompt = [1 + i % 255 for i in range(n)]
    ms = {}
    for side, module in (sides if r % 2 == 0 else sides[::-1]):  # alternate which runs first
      ms[side] = _median_ms(module.Sampler(model, {"type": "bytes", "separator": 0}, 1024), prompt, args.repeats)
      print(json.dumps({"prompt_tokens": n, "max_tokens": MAX_TOKENS, "side": side, "median_ms": round(ms[side], 1),
                        "repeats": args.repeats, "machine": machine}), flush=True)
    if args.base:
      print(json.dumps({"prompt_tokens": n, "base_over_this": round(ms["base"] / ms["this"], 2)}), flush=True)


if __name__ == "__main__":
  main()
