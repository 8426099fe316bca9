"""Classify texts with a trained run: the vocabulary and label names come from the work directory.

  python -m flaxforge.launch.predict --workdir=runs/20ng "text to classify" "another text"
  python -m flaxforge.launch.predict --workdir=runs/20ng --input=texts.txt --json      # one text per line
  cat texts.txt | python -m flaxforge.launch.predict --workdir=runs/20ng

Output line i belongs to input line i: a blank input line gets an empty result.
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
  """The texts, one per argument or input line; blank lines are kept (each gets an empty result line)."""
  if argv[1:]:
    return argv[1:]
  if INPUT.value and INPUT.value != "-":
    try:
      with open(INPUT.value, encoding="utf-8", errors="replace") as f:
        texts, source = [line.rstrip("\r\n") for line in f], INPUT.value
    except OSError as e:
      raise common.UserError(f"cannot read --input={INPUT.value} ({e.strerror}); pass a readable text file, one "
                             "text per line, or --input=- for stdin") from None
  elif INPUT.value == "-" or not sys.stdin.isatty():
    texts, source = [line.rstrip("\r\n") for line in sys.stdin], "stdin"
  else:
    raise common.UserError("no text to classify: pass texts as arguments, --input=FILE, or pipe them on stdin")
  if not any(t.strip() for t in texts):
    raise common.UserError(f"{source} holds no text to classify; put one text per line in it")
  return texts


def main(argv):
  workdir = common.require_workdir()
  common.use_workdir_xla_flags(workdir)
  common.one_checkpoint(STEP.value, BEST.value)
  texts = _texts(argv)
  from flaxforge.trainer import predict  # pylint: disable=g-import-not-at-top
  predictor = predict.Predictor.from_workdir(workdir, step=STEP.value, best=BEST.value)
  kept = [t for t in texts if t.strip()]
  tops = iter(predictor.top_k(kept, TOP_K.value))
  for text in texts:
    top = next(tops) if text.strip() else []
    if JSON.value:
      print(json.dumps({"text": text, "top": [{"label": l, "probability": p} for l, p in top]}))
    else:
      shown = ", ".join(f"{label} {p:.3f}" for label, p in top)
      print(f"{shown}\t{text[:80]}")


if __name__ == "__main__":
  common.run(main)
