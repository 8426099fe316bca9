"""Issue 33's Llama-3-8B plans on the CPU machine, each through the `flaxforge plan` command as a user runs it,
from a `config.json` written from the published shape (no weights): LoRA rank 16 on v5e-8 in finetune_lm's
layout, searched, and the search's first setting planned alone; full fine-tuning on v5e-8, searched on v5e-8,
and on v5p-64 at batch 32, with the parameter and optimizer bytes a chip holds against arithmetic; LoRA on
h100-8 and h200-8; an unknown target. --extra adds flags to every step (the record's names say which).

  nice -n 5 .venv/bin/python -m benchmarks.plan_llama8b [--skip-search]
  nice -n 5 GPU_PLAN_VENV/bin/python -m benchmarks.plan_llama8b --only lora_h100-8 lora_h200-8

One record per command in benchmarks/results/plan_llama8b_DATE.jsonl: the command, exit status, wall
seconds, its output and, from --out, each compiled plan's verdict, peak, state bytes and
compile seconds. Shape: https://huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json
"""
import argparse
import datetime
import json
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

from benchmarks import records

LLAMA3_8B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 128000, "eos_token_id": 128001,
}
# Parameters of that shape: embeddings and LM head, per layer q/o (4096^2 each), k/v (4096x1024 each), the
# SwiGLU MLP (3 x 4096 x 14336) and two norms, and the final norm.
LAYER = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096
PARAMETERS = 2 * 128256 * 4096 + 32 * LAYER + 4096


def _base(model_dir: str) -> list[str]:
  return ["--config=finetune_lm", f"--config.model.pretrained={model_dir}", "--config.data.seq_len=2048",
          "--config.model.dtype=bfloat16"]


def _first_setting(stdout: list[str]) -> list[str] | None:
  """The --config overrides of the first row a `plan --search` printed, or None if none fits."""
  ranked = [line for line in stdout if line.strip()[:1].isdigit() and "--config." in line]
  return ranked[0].split()[4:] if ranked else None


def _run(name: str, args: list[str], folder: pathlib.Path, out_path: pathlib.Path, extra: list[str]) -> dict:
  args = [*args, *extra]
  name += "".join(f"+{flag.removeprefix('--config.')}" for flag in extra)
  out = folder / f"{name}.json"
  command = [str(pathlib.Path(sys.executable).parent / "flaxforge"), "plan", *args, f"--out={out}"]
  print("$", shlex.join(command[1:]), file=sys.stderr, flush=True)
  start = time.perf_counter()
  proc = subprocess.run(command, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  sys.stderr.write(proc.stderr[-4000:])
  print(proc.stdout, file=sys.stderr, flush=True)
  plans = json.loads(out.read_text()) if out.exists() else None
  plans = [plans] if isinstance(plans, dict) else plans
  row = {"name": name, "command": "flaxforge plan " + shlex.join(args), "exit": proc.returncode,
         "wall_s": round(seconds, 1), "stdout": proc.stdout.strip().splitlines(),
         "stderr_last": proc.stderr.strip().splitlines()[-1:] if proc.stderr.strip() else [],
         "plans": [{"overrides": p["overrides"], "mesh": p["mesh"], "batch_size": p["batch_size"],
                    "grad_accum_steps": p["grad_accum_steps"], "fits": p["fits"],
                    "peak_bytes": p["memory"]["peak"] if p["memory"] else None, "memory": p["memory"],
                    "state": p["state"],
                    "compile_seconds": p["compile_seconds"], "roofline": p["roofline"]} for p in plans or []],
         "date": datetime.date.today().isoformat(), **records.machine()}
  records.append(out_path, [row])
  return row


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--skip-search", action="store_true", help="the LoRA search is the long part (many compiles)")
  parser.add_argument("--only", nargs="*", help="names of the steps to run (default: all)")
  parser.add_argument("--first", help="lora_v5e8_first's overrides (one string), instead of the search's first row")
  parser.add_argument("--extra", nargs="*", default=[], help="--config.FIELD=VALUE flags added to every step")
  parser.add_argument("--record", default=f"plan_llama8b_{datetime.date.today().isoformat()}.jsonl",
                      help="the record's file name in benchmarks/results (rows are appended)")
  args = parser.parse_args()
  out_path = pathlib.Path(__file__).parent / "results" / args.record
  folder = pathlib.Path(tempfile.mkdtemp(prefix="plan_llama8b_"))
  model = folder / "llama3-8b"
  model.mkdir()
  (model / "config.json").write_text(json.dumps(LLAMA3_8B, indent=2))
  base, lora, full = _base(str(model)), ["--config.model.lora.rank=16"], ["--config.model.lora.rank=0"]
  want = lambda name: not args.only or name in args.only
  run = lambda name, flags: _run(name, flags, folder, out_path, args.extra)
  print(f"Llama-3-8B shape: {PARAMETERS:,} parameters", file=sys.stderr)

  for gpu in ("h100-8", "h200-8"):  # need the gpu-plan extra: run with its python, --only lora_h100-8 lora_h200-8
    if args.only and f"lora_{gpu}" in args.only:
      run(f"lora_{gpu}", [*base, *lora, "--config.data.batch_size=8", f"--target={gpu}"])
  if want("unknown_target"):
    run("unknown_target", [*base, *lora, "--target=v5x-8"])
  if want("full_v5e8"):
    run("full_v5e8", [*base, *full, "--config.data.batch_size=8", "--target=v5e-8"])
  if want("full_v5e8_search"):
    run("full_v5e8_search", [*base, *full, "--config.data.batch_size=8", "--target=v5e-8", "--search"])
  if want("full_v5p64_b32"):
    row = run("full_v5p64_b32", [*base, *full, "--config.data.batch_size=32", "--target=v5p-64"])
    if row["plans"]:
      state, shards = row["plans"][0]["state"], row["plans"][0]["mesh"]
      sharding = shards.get("fsdp", 1) * shards.get("tensor", 1)
      # float32 parameters and AdamW's two float32 moments, over the chips the mesh splits them on.
      arithmetic = {"parameters": PARAMETERS * 4 / sharding, "optimizer_state": 2 * PARAMETERS * 4 / sharding}
      check = {k: {"plan": state[k], "arithmetic": v, "ratio": state[k] / v} for k, v in arithmetic.items()}
      records.append(out_path, [{"name": row["name"] + "_bytes_vs_arithmetic", "sharding": sharding,
                                 "parameters_total": PARAMETERS, **check}])
      print(json.dumps(check), file=sys.stderr)
  if want("lora_v5e8_default"):  # the mesh finetune_lm chooses (FSDP over the 8 chips), no overrides
    run("lora_v5e8_default", [*base, *lora, "--config.data.batch_size=8", "--target=v5e-8"])
  first = None
  if want("lora_v5e8_search") and not args.skip_search:
    row = run("lora_v5e8_search", [*base, *lora, "--config.data.batch_size=8", "--target=v5e-8", "--search"])
    first = _first_setting(row["stdout"])
  if want("lora_v5e8_first"):
    first = first or (args.first.split() if args.first else None)
    if first is None:  # the search ran earlier: its first row, from the record
      rows = [json.loads(l) for l in out_path.read_text().splitlines()] if out_path.exists() else []
      searched = [r for r in rows if r.get("name") == "lora_v5e8_search"]
      first = _first_setting(searched[-1]["stdout"]) if searched else None
      if first is None:
        sys.exit("no LoRA search on record: run without --skip-search first")
    run("lora_v5e8_first", [*base, *lora, *first, "--target=v5e-8"])


if __name__ == "__main__":
  main()
