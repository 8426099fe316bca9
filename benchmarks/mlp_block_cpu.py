"""A BERT MLP block's forward + backward, XLA:CPU against PyTorch, alternating in one process: x [4096, 384]
-> dense 1536 -> exact GELU -> dense 384 (MiniLM's shape at batch 32, sequence 128), gradients of every
input. How far XLA's matmuls are from PyTorch's on this machine, before any of flaxforge's code. Medians of
15 calls per round, milliseconds and GFLOP/s (6 matmuls of 2 * 4096 * 384 * 1536).

  .venv/bin/python benchmarks/mlp_block_cpu.py [--rounds 3]   (torch comes with the test extra)
"""
import argparse
import os
import time

import jax
import numpy as np
import torch

from flaxforge.models.transformer import gelu_erf

FLOPS = 6 * 2 * 4096 * 384 * 1536


def _median_ms(fn, calls=15):
  fn()
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--rounds", type=int, default=3)
  args = p.parse_args()
  torch.set_num_threads(os.cpu_count())
  rng = np.random.default_rng(0)
  x, w1, w2 = (rng.normal(size=s).astype(np.float32) * 0.05 for s in ((4096, 384), (384, 1536), (1536, 384)))
  b1 = np.zeros(1536, np.float32)
  grad = jax.jit(jax.grad(lambda x, w1, b1, w2: (gelu_erf(x @ w1 + b1) @ w2).sum(), argnums=(0, 1, 2, 3)))
  xla_args = [jax.numpy.asarray(a) for a in (x, w1, b1, w2)]
  torch_args = [torch.tensor(a, requires_grad=True) for a in (x, w1, b1, w2)]

  def torch_step():
    tx, tw1, tb1, tw2 = torch_args
    (torch.nn.functional.gelu(tx @ tw1 + tb1) @ tw2).sum().backward()

  for r in range(args.rounds):
    for name, fn in (("XLA", lambda: jax.block_until_ready(grad(*xla_args))), ("PyTorch", torch_step)):
      ms = _median_ms(fn)
      print(f"round {r} {name:8s} {ms:7.1f} ms  {FLOPS / ms / 1e6:6.1f} GFLOP/s", flush=True)


if __name__ == "__main__":
  main()
