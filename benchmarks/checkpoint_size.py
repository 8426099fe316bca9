"""What a MiniLM fine-tune's checkpoint holds on disk, fully fine-tuned and with LoRA (README, Pretrained
models; BENCHMARKS.md): the bytes of `checkpoints/2` (as `du -sb` counts them) after two steps, and, for
the full fine-tune, the bytes of the model's arrays and of the optimizer's (AdamW: two moments a parameter).

  PYTHONPATH=. .venv/bin/python -m benchmarks.checkpoint_size --out benchmarks/results/checkpoint_size_<date>.jsonl

Batch 8 on a generated CSV of 200 short texts in 20 classes (the checkpoint depends on the data only through
the number of classes: 20, as 20 Newsgroups), sequence 256, `finetune_text`'s defaults otherwise; LoRA rank
8 on the config's default targets.
"""
import argparse
import json
import pathlib
import sys
import tempfile

import jax

from benchmarks import records, runner, workloads


def _bytes(folder: pathlib.Path) -> int:
  """Every file's size under `folder` (what `du -sb` counts, directories aside)."""
  return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _array_bytes(tree) -> int:
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree) if hasattr(x, "dtype"))


def measure(workdir: pathlib.Path, lora_rank: int, a) -> dict:
  table = workdir.parent / "texts.csv"
  table.write_text("text,label\n" + "".join(f"text number {i} on topic {i % 20},topic{i % 20}\n" for i in range(200)))
  cmd = [sys.executable, "-m", "flaxforge.launch.train", "--config=launch/configs/finetune_text.py",
         f"--workdir={workdir}", f"--config.data.path={table}", f"--config.model.pretrained={a.model}",
         "--config.data.batch_size=8", "--config.train.num_steps=2", "--config.train.progress_bar=false",
         f"--config.model.lora.rank={lora_rank}"]
  machine = records.machine()
  runner.run(cmd, timeout=7200)
  row = {**machine, "command": " ".join(cmd[1:]), "lora_rank": lora_rank,
         "checkpoint_bytes": _bytes(workdir / "checkpoints" / "2")}
  if not lora_rank:
    from flaxforge.trainer import restore  # pylint: disable=g-import-not-at-top
    state = restore.restore(str(workdir), step=2).state
    row.update(model_array_bytes=_array_bytes(state[0]), optimizer_array_bytes=_array_bytes(state[1]))
  return row


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--model", default=workloads.MINILM_DIR)
  p.add_argument("--out", default="")
  a = p.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    rows = [measure(pathlib.Path(tmp) / f"rank{r}", r, a) for r in (0, 8)]
  for row in rows:
    print(json.dumps(row), flush=True)
  if a.out:
    records.append(a.out, rows)


if __name__ == "__main__":
  main()
