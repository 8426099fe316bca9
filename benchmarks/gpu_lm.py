"""GPU throughput and MFU of the GPT presets through the trainer's own sharded train step.

Synthetic token batches already on the device (this measures the step, not the input pipeline), bfloat16
compute with float32 parameters and AdamW state, cuDNN attention where available. Prints one JSON line per
preset: tokens/s and MFU against the analytic model FLOPs (6N + 12LTd per token) over the chip's peak.
  python -m benchmarks.gpu_lm --presets 125m,350m --steps 100 --batch 16 --seq 1024
"""
import argparse
import json
import time

import jax
import numpy as np

from flaxforge.models import transformer
from flaxforge.models.transformer import transformer_flops_per_token
from flaxforge.trainer import flops, mesh as mesh_lib, state as state_lib, steps


class Cfg(dict):
  """The few config fields the trainer reads, without needing ml_collections on the GPU machine."""
  __getattr__ = dict.__getitem__


def config(preset: str, args) -> Cfg:
  model = Cfg(name="gpt", size=preset, dtype="bfloat16", norm="layer", position="learned", use_bias=True,
              attention_impl=args.attention, tie_embeddings=True, dropout=0.0)
  opt = Cfg(name="adamw", learning_rate=3e-4, schedule="warmup_cosine", warmup_steps=20, end_lr_factor=0.1,
            b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, grad_clip_norm=1.0, momentum=0.9, nesterov=False)
  return Cfg(seed=0, model=model, optimizer=opt)


def run(preset: str, args) -> dict:
  cfg = config(preset, args)
  info = {"task": "lm", "vocab_size": args.vocab, "seq_len": args.seq}
  mesh = mesh_lib.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
  structure, create = state_lib.structure(cfg, info, mesh, total_steps=args.steps + args.warmup)
  state = create()
  step = steps.make_train_step(structure, mesh, loss_kind="cross_entropy", accum_steps=args.accum)
  rng = np.random.default_rng(0)
  batches = [{"inputs": rng.integers(0, args.vocab, (args.batch, args.seq), dtype=np.int32),
              "label": rng.integers(0, args.vocab, (args.batch, args.seq), dtype=np.int32),
              "mask": np.ones(args.batch, np.float32)} for _ in range(4)]
  batches = [jax.device_put(b, mesh_lib.batch_sharding(mesh)) for b in batches]
  sums = steps.train_metrics_init(mesh)
  t0 = time.perf_counter()
  state, sums = step(state, sums, batches[0])
  jax.block_until_ready(sums)
  compile_s = time.perf_counter() - t0
  for i in range(args.warmup - 1):
    state, sums = step(state, sums, batches[i % 4])
  jax.block_until_ready(sums)
  t0 = time.perf_counter()
  for i in range(args.steps):
    state, sums = step(state, sums, batches[i % 4])
  loss = float(jax.device_get(sums)["loss_sum"])  # waits for the last step
  seconds = time.perf_counter() - t0
  arch = transformer.arch_from_config(cfg.model, info)
  per_token = transformer_flops_per_token(arch.num_layers, arch.embed_dim, arch.mlp_dim, args.seq,
                                                arch.padded_vocab, causal=False)
  tokens_s = args.steps * args.batch * args.seq / seconds
  peak = flops.system_peak("bfloat16")
  return {"preset": preset, "params": state_lib.parameter_count(structure.abstract), "batch": args.batch,
          "seq": args.seq, "accum": args.accum, "ms_per_step": 1000 * seconds / args.steps,
          "tokens_per_second": round(tokens_s), "model_tflops_per_second": round(per_token * tokens_s / 1e12, 1),
          "mfu": round(per_token * tokens_s / peak.flops, 4) if peak else None,
          "peak_source": peak.source if peak else None, "compile_seconds": round(compile_s, 1),
          "finite": bool(np.isfinite(loss)), "device": jax.devices()[0].device_kind,
          "jax": jax.__version__}


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--presets", default="125m,350m", help="preset[:batch], comma-separated")
  ap.add_argument("--steps", type=int, default=100)
  ap.add_argument("--warmup", type=int, default=5)
  ap.add_argument("--batch", type=int, default=16)
  ap.add_argument("--seq", type=int, default=1024)
  ap.add_argument("--accum", type=int, default=1)
  ap.add_argument("--vocab", type=int, default=50257)
  ap.add_argument("--attention", default="auto")
  args = ap.parse_args()
  for item in args.presets.split(","):
    preset, _, batch = item.partition(":")
    try:
      print(json.dumps(run(preset, argparse.Namespace(**{**vars(args), "batch": int(batch or args.batch)}))),
            flush=True)
    except Exception as e:  # pylint: disable=broad-except  (one preset failing must not lose the others)
      print(json.dumps({"preset": preset, "error": f"{type(e).__name__}: {str(e)[:500]}"}), flush=True)


if __name__ == "__main__":
  main()
