"""Packing's speed-up on chat-shaped data (issue 28): real (non-padding) tokens per second of chat SFT with
data.packing=True against the same examples one per padded row, same random Llama, same machine, one run.

The conversations are 20 Newsgroups posts made chat-shaped: the user sends a post's first paragraph (after
its headers), the assistant names the newsgroup. Their lengths are a realistic mix, most far shorter than
seq_len. A train record's tokens_per_second counts every position of its rows; the real share comes from
the packed run's `packing` record (one epoch of the same training split): tokens / (rows x seq_len) packed,
tokens / (examples x seq_len) unpacked.

  PYTHONPATH=. nice -n 10 .venv/bin/python -m benchmarks.chat_packing [--conversations=600] [--seq_len=512]
"""
import argparse
import json
import os
import pathlib
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import tokenizers  # pylint: disable=wrong-import-position
import torch  # pylint: disable=wrong-import-position
import transformers  # pylint: disable=wrong-import-position
from tokenizers import models, pre_tokenizers  # pylint: disable=wrong-import-position

from benchmarks import workloads  # pylint: disable=wrong-import-position
from flaxforge.data import newsgroups  # pylint: disable=wrong-import-position
from flaxforge.launch.configs import finetune_lm  # pylint: disable=wrong-import-position
from flaxforge.trainer import loop  # pylint: disable=wrong-import-position

# Llama 3's chat template, the assistant's reply and <|eot_id|> in a generation block.
TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}"
    "{% endgeneration %}{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
SPECIAL = ["<|end_of_text|>", "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]


def conversations(count: int, max_chars: int = 2000) -> list[list[dict]]:
  """`count` seeded conversations from the 20 Newsgroups training posts."""
  archive = os.path.join(workloads.NG_DIR, "20news-bydate.tar.gz")
  out = []
  for text, label in newsgroups.documents(archive, "train"):
    body = text.split("\n\n", 1)[-1]
    paragraph = next((p.strip() for p in body.split("\n\n") if len(p.split()) >= 3), "")[:max_chars]
    if paragraph:
      out.append([{"role": "user", "content": f"Which newsgroup is this from?\n\n{paragraph}"},
                  {"role": "assistant", "content": f"It is from {newsgroups.GROUPS[label]}."}])
  keep = np.random.default_rng(0).permutation(len(out))[:count]
  return [out[i] for i in keep]


def save_model(path: pathlib.Path, texts, *, width: int, layers: int, seq_len: int) -> str:
  """A random Llama and a 2,000-token byte-level BPE tokenizer trained on `texts`, with TEMPLATE."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  tok.train_from_iterator(texts, tokenizers.trainers.BpeTrainer(
      vocab_size=2000, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
      vocab_size=tok.get_vocab_size(), hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
      num_attention_heads=width // 32, num_key_value_heads=width // 64, max_position_embeddings=seq_len,
      bos_token_id=1, eos_token_id=0))
  model.save_pretrained(str(path), safe_serialization=True)
  tok.save(str(path / "tokenizer.json"))
  (path / "tokenizer_config.json").write_text(json.dumps({"bos_token": SPECIAL[1], "eos_token": SPECIAL[0]}))
  (path / "chat_template.jinja").write_text(TEMPLATE)
  return str(path)


def run(tmp: pathlib.Path, model_dir: str, data: str, seq_len: int, batch: int, packing: bool) -> dict:
  """One epoch of chat SFT; the train records after the first (compilation), and the packing record."""
  c = finetune_lm.get_config()
  c.model.pretrained, c.data.path, c.data.seq_len, c.data.batch_size = model_dir, data, seq_len, batch
  c.data.packing, c.data.validation_fraction = packing, 0.0
  c.train.num_epochs, c.train.log_every, c.train.progress_bar = 1, 4, False
  c.train.eval_every_steps = 1 << 20
  c.optimizer.learning_rate = 1e-3
  workdir = tmp / ("packed" if packing else "unpacked")
  loop.train(c, str(workdir), devices=jax.devices()[:1])
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return {"train": [r for r in records if r.get("split") == "train"][1:],
          "packing": next((r for r in records if r.get("split") == "packing"), None), "workdir": workdir}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--conversations", type=int, default=600)
  p.add_argument("--seq_len", type=int, default=512)
  p.add_argument("--batch_size", type=int, default=8)
  p.add_argument("--width", type=int, default=128)
  p.add_argument("--layers", type=int, default=2)
  a = p.parse_args()
  chats = conversations(a.conversations)
  with tempfile.TemporaryDirectory() as folder:
    tmp = pathlib.Path(folder)
    model_dir = save_model(tmp / "model", [m["content"] for c in chats for m in c], width=a.width,
                           layers=a.layers, seq_len=a.seq_len)
    data = tmp / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in chats))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp / "model" / "tokenizer.json"))
    tokenizer.chat_template, tokenizer.bos_token = TEMPLATE, SPECIAL[1]
    lengths = np.array([min(len(tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]),
                            a.seq_len + 1) - 1 for c in chats])  # positions per example, reported only
    results, stats = {}, None
    for packing in (True, False):
      r = run(tmp, model_dir, str(data), a.seq_len, a.batch_size, packing)
      stats = r["packing"] or stats
      fill = stats["tokens"] / ((stats["rows"] if packing else stats["unpacked_rows"]) * a.seq_len)
      positions_per_s = float(np.median([t["tokens_per_second"] for t in r["train"]]))
      results[packing] = positions_per_s * fill
      print(json.dumps({"packing": packing, "steps": r["train"][-1]["step"] if r["train"] else 0,
                        "positions_per_second": round(positions_per_s), "real_share": round(float(fill), 4),
                        "real_tokens_per_second": round(results[packing]),
                        **({"padding_removed": round(r["packing"]["padding_removed"], 4),
                            "rows_ratio": round(r["packing"]["rows_ratio"], 3)} if packing else {})}), flush=True)
  print(json.dumps({"conversations": len(chats), "seq_len": a.seq_len, "median_length": float(np.median(lengths)),
                    "p90_length": float(np.percentile(lengths, 90)), "device": jax.devices()[0].device_kind,
                    "speedup": round(results[True] / results[False], 2)}), flush=True)


if __name__ == "__main__":
  main()
