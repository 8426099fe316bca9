"""Classify texts with a trained run: the vocabulary and label names come from the work directory.

  python -m flaxforge.launch.predict --workdir=runs/20ng "text to classify" "another text"
  python -m flaxforge.launch.predict --workdir=runs/20ng --input=texts.txt --json      # one text per line
  cat texts.txt | python -m flaxforge.launch.predict --workdir=runs/20ng
"""
import json
import sys

from absl import flags

from flaxforge.launch import common

INPUT = flags.DEFINE_string("input", None, "File with one text per line ('-' for stdin).")
TOP_K = flags.DEFINE_integer("top_k", 3, "How many labels to show per text.")
JSON = flags.DEFINE_bool("json", False, "One JSON object per input: {text, top: [{label, probability}]}.")
STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
BEST = flags.DEFINE_bool("best", False, "Use the checkpoint with the best validation metric.")


def _texts(argv) -> list[str]:
  if argv[1:]:
    return argv[1:]
  if INPUT.value and INPUT.value != "-":
    with open(INPUT.value, encoding="utf-8", errors="replace") as f:
      return [line.rstrip("\n") for line in f if line.strip()]
  if INPUT.value == "-" or not sys.stdin.isatty():
    return [line.rstrip("\n") for line in sys.stdin if line.strip()]
  raise common.UserError("no text to classify: pass texts as arguments, --input=FILE, or pipe them on stdin")


def main(argv):
  workdir = common.require_workdir()
  common.use_workdir_xla_flags(workdir)
  texts = _texts(argv)
  from flaxforge.trainer import predict  # pylint: disable=g-import-not-at-top
  predictor = predict.TextClassifier.from_workdir(workdir, step=STEP.value, best=BEST.value)
  for text, top in zip(texts, predictor.top_k(texts, TOP_K.value)):
    if JSON.value:
      print(json.dumps({"text": text, "top": [{"label": l, "probability": p} for l, p in top]}))
    else:
      shown = ", ".join(f"{label} {p:.3f}" for label, p in top)
      print(f"{shown}\t{text[:80]}")


if __name__ == "__main__":
  common.run(main)
