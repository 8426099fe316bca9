"""Export a run as a Hugging Face directory: flaxforge export_hf --workdir=DIR --out=DIR [--step=N | --best]

Writes config.json, model.safetensors (LoRA adapters merged) and the run's tokenizer.json, which
`transformers` loads (`AutoModel.from_pretrained(DIR)`); the classification head is not part of it.
"""
from absl import flags

from flaxforge.launch import common

OUT = flags.DEFINE_string("out", None, "The Hugging Face directory to write.")
STEP = flags.DEFINE_integer("step", None, "Checkpoint step to export (default: the latest).")
BEST = flags.DEFINE_bool("best", False, "Export the checkpoint with the best validation metric.")


def main(argv):
  del argv
  workdir = common.require_workdir()
  if not OUT.value:
    raise common.UserError("no output directory; pass --out=DIR")
  common.one_checkpoint(STEP.value, BEST.value)
  common.init_distributed()
  from flaxforge.trainer import hf_export  # pylint: disable=g-import-not-at-top
  print(f"wrote {hf_export.export_workdir(workdir, OUT.value, step=STEP.value, best=BEST.value)}")


if __name__ == "__main__":
  common.run(main)
