"""DPO toward one of two answer styles (issue 28): a random Llama is chat-SFT'd (packed, all weights) on
20 Newsgroups conversations (benchmarks/chat_packing.py) answered half tersely ("sci.space.") and half
verbosely ("Well, I would say that this post was written for sci.space."), exported to a Hugging Face
directory, then DPO'd with LoRA toward the terse style on pairs of other conversations. The held-out
pairs' (the DPO run's validation split: prompts neither stage trained on) reward accuracy, margin and loss
are printed at every evaluation, one JSON line each.

  PYTHONPATH=. nice -n 10 .venv/bin/python -m benchmarks.dpo_styles [--conversations=400]
"""
import argparse
import json
import pathlib
import tempfile

import jax

from benchmarks import chat_packing
from flaxforge.launch.configs import dpo, finetune_lm
from flaxforge.serving import export_hf
from flaxforge.trainer import loop

TERSE, VERBOSE = "{}.", "Well, I would say that this post was written for {}."


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--conversations", type=int, default=600)
  p.add_argument("--seq_len", type=int, default=256)
  p.add_argument("--sft_epochs", type=int, default=3)
  p.add_argument("--dpo_steps", type=int, default=60)
  p.add_argument("--beta", type=float, default=0.1)
  p.add_argument("--dpo_learning_rate", type=float, default=5e-4)
  a = p.parse_args()
  chats = chat_packing.conversations(a.conversations, max_chars=400)
  half = len(chats) // 2  # SFT on the first half, DPO on the second
  groups = [c[1]["content"].removeprefix("It is from ").removesuffix(".") for c in chats]
  with tempfile.TemporaryDirectory() as folder:
    tmp = pathlib.Path(folder)
    sft_rows = [{"messages": [c[0], {"role": "assistant", "content": (TERSE if i % 2 else VERBOSE).format(g)}]}
                for i, (c, g) in enumerate(zip(chats[:half], groups[:half]))]
    model_dir = chat_packing.save_model(tmp / "model", [m["content"] for r in sft_rows for m in r["messages"]],
                                        width=128, layers=2, seq_len=a.seq_len)
    (tmp / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft_rows))
    c = finetune_lm.get_config()
    c.model.pretrained, c.data.path, c.data.seq_len, c.data.batch_size = model_dir, str(tmp / "sft.jsonl"), a.seq_len, 8
    c.data.packing, c.train.num_epochs, c.train.progress_bar, c.train.log_every = True, a.sft_epochs, False, 10
    c.optimizer.learning_rate, c.optimizer.warmup_steps = 2e-3, 5
    sft = loop.train(c, str(tmp / "sft"), devices=jax.devices()[:1])
    print(json.dumps({"stage": "sft", "validation_loss": round(float(sft["loss"]), 4)}), flush=True)
    export_hf.export_workdir(str(tmp / "sft"), str(tmp / "sft_hf"))

    pairs = [{"prompt": [c[0]], "chosen": TERSE.format(g), "rejected": VERBOSE.format(g)}
             for c, g in zip(chats[half:], groups[half:])]
    (tmp / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    d = dpo.get_config()
    d.model.pretrained, d.data.path, d.data.seq_len = str(tmp / "sft_hf"), str(tmp / "pairs.jsonl"), a.seq_len
    d.data.bad_rows = "drop"  # a prompt past seq_len
    d.preference.beta, d.train.num_steps, d.train.eval_every_steps = a.beta, a.dpo_steps, max(a.dpo_steps // 12, 1)
    d.train.log_every, d.train.progress_bar = max(a.dpo_steps // 12, 1), False
    d.optimizer.learning_rate, d.optimizer.warmup_steps = a.dpo_learning_rate, 5
    loop.train(d, str(tmp / "dpo"), devices=jax.devices()[:1])
    for line in (tmp / "dpo" / "metrics.jsonl").read_text().splitlines():
      r = json.loads(line)
      if r.get("split") in ("train", "validation"):
        print(json.dumps({"stage": "dpo", **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                                            if k in ("split", "step", "loss", "reward_accuracy", "reward_margin",
                                                     "chosen_logps", "rejected_logps")}}), flush=True)


if __name__ == "__main__":
  main()
