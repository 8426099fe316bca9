"""Peak host memory while `models.hf` loads a sharded Hugging Face checkpoint, and while it exports one,
against the checkpoint's size: a random Llama (vocabulary 16,384, width 1,024, 6 layers, MLP 2,816, 16
heads, 8 key/value heads, untied head: 104M parameters, 208 MB in bfloat16, 415 MB in float32) in 3 shards.

  nice -n 10 .venv/bin/python -m benchmarks.hf_load_memory --dir /tmp/hf_memory

For each dtype (bfloat16, float32) one fresh process loads the checkpoint with `hf.load` (one CPU device)
and then exports it (`hf.export`, shards of at most a third of the checkpoint). Around each, the peak
resident set (VmHWM, reset through /proc/self/clear_refs) minus the resident set before; `model` is the
bytes of the loaded float32 parameters, which on a CPU live in host memory too (on a GPU or TPU they are
device memory), so `beyond_model` = peak - model is what loading holds besides the model itself. One JSON
line per dtype.
"""
import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np

CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 16384, "hidden_size": 1024,
          "num_hidden_layers": 6, "num_attention_heads": 16, "num_key_value_heads": 8, "intermediate_size": 2816,
          "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "tie_word_embeddings": False}


def _shapes(c) -> dict:
  """{tensor name: shape} of LlamaForCausalLM for config `c`, in transformers' order."""
  d, m, h = c["hidden_size"], c["intermediate_size"], c["hidden_size"] // c["num_attention_heads"]
  kv = c["num_key_value_heads"] * h
  shapes = {"model.embed_tokens.weight": (c["vocab_size"], d)}
  for i in range(c["num_hidden_layers"]):
    p = f"model.layers.{i}."
    shapes.update({p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (kv, d),
                   p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, d),
                   p + "mlp.gate_proj.weight": (m, d), p + "mlp.up_proj.weight": (m, d),
                   p + "mlp.down_proj.weight": (d, m), p + "input_layernorm.weight": (d,),
                   p + "post_attention_layernorm.weight": (d,)})
  shapes.update({"model.norm.weight": (d,), "lm_head.weight": (c["vocab_size"], d)})
  return shapes


def make(folder, dtype: str) -> int:
  """Writes the random checkpoint in 3 shards (one shard in memory at a time); returns its bytes."""
  from flaxforge.models.hf import shards  # pylint: disable=import-outside-toplevel
  os.makedirs(folder, exist_ok=True)
  np_dtype, rng = shards.dtype_of(dtype), np.random.default_rng(0)
  shapes = _shapes(CONFIG)
  sizes = {name: int(np.prod(s)) * np_dtype.itemsize for name, s in shapes.items()}
  groups = shards.plan(sizes, -(-sum(sizes.values()) // 3) + max(sizes.values()) // 2)
  weight_map = {}
  for file, group in zip(shards.file_names(len(groups)), groups):
    arrays = {name: (rng.standard_normal(shapes[name], np.float32) * 0.02).astype(np_dtype) for name in group}
    shards.write_shard(pathlib.Path(folder), file, arrays)
    weight_map.update(dict.fromkeys(group, file))
  shards.write_index(pathlib.Path(folder), weight_map, sum(sizes.values()))
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump({**CONFIG, "dtype": dtype}, f)
  return sum(sizes.values())


def _status(field: str) -> int:
  """A /proc/self/status field, bytes."""
  with open("/proc/self/status") as f:
    return int(re.search(rf"{field}:\s+(\d+) kB", f.read()).group(1)) * 1024


def _peak_since(run):
  """(run's result, peak resident bytes during it above the resident bytes before it)."""
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current resident set
  before = _status("VmRSS")
  result = run()
  return result, _status("VmHWM") - before


def measure(folder, out, checkpoint_bytes: int) -> dict:
  """In this process: the peaks of hf.load and hf.export of `folder` (one CPU device)."""
  import jax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from flaxforge.models import hf  # pylint: disable=import-outside-toplevel
  jax.numpy.zeros(1).block_until_ready()  # the runtime started before the first measurement
  start = time.perf_counter()
  model, load_peak = _peak_since(lambda: hf.load(folder))
  load_s = time.perf_counter() - start
  model_bytes = sum(x.nbytes for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  # a third of the checkpoint and half its largest tensor (in the checkpoint's dtype): 3 shards, as `make` wrote
  largest = max(x.nbytes for x in jax.tree.leaves(nnx.state(model, nnx.Param))) * checkpoint_bytes // model_bytes
  shard = checkpoint_bytes // 3 + largest // 2
  _, export_peak = _peak_since(lambda: hf.export(model, out, base=folder, max_shard_size=shard))
  mb = lambda n: round(n / 1e6, 1)
  return {"checkpoint_mb": mb(checkpoint_bytes), "model_mb": mb(model_bytes), "load_peak_mb": mb(load_peak),
          "load_peak_x": round(load_peak / checkpoint_bytes, 3),
          "load_s": round(load_s, 2),
          "load_beyond_model_x": round((load_peak - model_bytes) / checkpoint_bytes, 3),
          "export_peak_mb": mb(export_peak), "export_peak_x": round(export_peak / checkpoint_bytes, 3),
          "export_files": sorted(os.listdir(out))}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dir", default="/tmp/hf_memory", help="where the checkpoints and exports are written")
  parser.add_argument("--dtypes", default="bfloat16,float32")
  parser.add_argument("--measure", nargs=3, metavar=("FOLDER", "OUT", "BYTES"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.measure:
    folder, out, size = args.measure
    print(json.dumps(measure(folder, out, int(size))))
    return
  for dtype in args.dtypes.split(","):
    folder = os.path.join(args.dir, dtype)
    size = make(folder, dtype)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as a user runs it
    result = subprocess.run([sys.executable, "-m", "benchmarks.hf_load_memory", "--measure", folder,
                             os.path.join(args.dir, f"{dtype}_export"), str(size)], env=env, capture_output=True,
                            text=True, check=True)
    print(json.dumps({"dtype": dtype, **json.loads(result.stdout.strip().splitlines()[-1])}), flush=True)


if __name__ == "__main__":
  main()
