"""QLoRA's memory and quality (issue 28): LoRA chat SFT on the same 20 Newsgroups conversations
(benchmarks/chat_packing.py) over a float32 base, an int8 base and an NF4 base (model.base_quant), same
seed and steps. One JSON line per base: its validation loss and the bytes the frozen base holds in memory
(quantized kernels plus the unquantized embeddings and norms), against the same base in bfloat16.

  PYTHONPATH=. nice -n 10 .venv/bin/python -m benchmarks.qlora_quality [--conversations=400]
"""
import argparse
import json
import pathlib
import tempfile

import jax
import numpy as np
from flax import nnx

from benchmarks import chat_packing
from flaxforge.launch.configs import finetune_lm
from flaxforge.models import quant
from flaxforge.trainer import loop, restore


def base_bytes(workdir: str) -> int:
  """Bytes of the restored model's frozen base: every variable but the LoRA adapters and RNG state."""
  run = restore.restore(workdir, model_only=True)
  model, _ = nnx.merge(run.structure.eval_graphdef, run.state)
  total = 0
  for path, value in nnx.to_flat_state(nnx.state(model, nnx.Any(nnx.Param, quant.QuantizedBase))):
    if not any("lora_" in str(p) for p in path):
      total += np.asarray(value[...]).nbytes
  return total


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--conversations", type=int, default=400)
  p.add_argument("--seq_len", type=int, default=256)
  p.add_argument("--steps", type=int, default=120)
  p.add_argument("--width", type=int, default=256)
  a = p.parse_args()
  chats = chat_packing.conversations(a.conversations, max_chars=400)
  with tempfile.TemporaryDirectory() as folder:
    tmp = pathlib.Path(folder)
    model_dir = chat_packing.save_model(tmp / "model", [m["content"] for c in chats for m in c], width=a.width,
                                        layers=2, seq_len=a.seq_len)
    (tmp / "chat.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in chats))
    for kind in ("none", "int8", "nf4"):
      c = finetune_lm.get_config()
      c.model.pretrained, c.data.path, c.data.seq_len = model_dir, str(tmp / "chat.jsonl"), a.seq_len
      c.data.packing, c.data.batch_size, c.data.validation_fraction = True, 8, 0.15
      c.model.lora.rank, c.model.lora.targets, c.model.base_quant = 8, "qkv,out,up,down", kind
      c.train.num_steps, c.train.eval_every_steps, c.train.progress_bar = a.steps, a.steps, False
      c.optimizer.learning_rate, c.optimizer.warmup_steps = 3e-3, 5
      results = loop.train(c, str(tmp / kind), devices=jax.devices()[:1])
      stored = base_bytes(str(tmp / kind))
      if kind == "none":
        bf16 = stored // 2  # the float32 base in bfloat16
      print(json.dumps({"base_quant": kind, "validation_loss": round(float(results["loss"]), 4),
                        "base_bytes": stored, "vs_bf16_base": round(stored / bf16, 3)}), flush=True)


if __name__ == "__main__":
  main()
