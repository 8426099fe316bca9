"""Predict with a trained run: its vocabulary or tokenizer, image size and normalisation, table statistics
and label names all come from the work directory, exactly as training applied them.

  flaxforge predict --workdir=runs/20ng "text to classify" "another text"
  flaxforge predict --workdir=runs/20ng --input=texts.txt --json        # one text per line ('-': stdin)
  flaxforge predict --workdir=runs/photos photo.jpg --input=more_photos/  # image files, or a folder of them
  flaxforge predict --workdir=runs/churn --input=rows.csv                 # table rows (.csv, .tsv, .jsonl)

Output line i belongs to input i. An empty input (a blank line or cell, an empty image file), a table cell
that is no finite number, or an image over --max_image_pixels is refused in one line naming it
(inference/inputs.py); table categories that training never saw are named in a warning. A regression run
prints values.
"""
import json
import sys

from absl import flags

from flaxforge.launch import common

INPUT = flags.DEFINE_string("input", None, "Texts: a file with one per line ('-' for stdin), or a .csv, .tsv "
                            "or .jsonl file (the run's text column). Images: a file or a folder of them. Tables: "
                            "a .csv, .tsv or .jsonl file of rows.")
TOP_K = flags.DEFINE_integer("top_k", 3, "How many labels to show per input.")
JSON = flags.DEFINE_bool("json", False, "One JSON object per input: {text, top: [{label, probability}]} (image "
                         "and table runs: {input, top: ...}; regression: value instead of top).")
CHECKPOINT = common.CheckpointChoice()
MAX_IMAGE_PIXELS = flags.DEFINE_integer("max_image_pixels", None, "Image runs: the largest image (width x height) "
                                        "decoded; bigger ones are refused (default: Pillow's 178,956,970).")


def main(argv):
  workdir = common.require_workdir()
  common.use_workdir_xla_flags(workdir)
  step, best = CHECKPOINT.chosen()
  if TOP_K.value < 1:
    raise common.UserError(f"--top_k={TOP_K.value} is out of range; use --top_k=1 or more (how many labels to "
                           "show per input)")
  from flaxforge.inference import predict  # pylint: disable=g-import-not-at-top
  modality = predict.modality_of(workdir)
  names, raws = modality.from_cli(argv[1:], INPUT.value, workdir)  # read first: a bad input fails before the restore
  predictor = predict.Predictor.from_workdir(workdir, step=step, best=best,
                                             max_image_pixels=MAX_IMAGE_PIXELS.value)
  results = predictor.results(raws, min(TOP_K.value, len(predictor.labels) or 1))
  unseen = predictor.encode.unseen(raws, names)[1]
  if unseen:
    print(f"warning: {unseen}", file=sys.stderr)
  for name, result in zip(names, results):
    if JSON.value:
      print(json.dumps({("text" if modality.name == "text" else "input"): name, **result}))
    elif "value" in result:
      print(f"{result['value']:.6g}\t{name[:80]}")
    else:
      print(", ".join(f"{t['label']} {t['probability']:.3f}" for t in result["top"]) + f"\t{name[:80]}")


if __name__ == "__main__":
  common.run(main)
