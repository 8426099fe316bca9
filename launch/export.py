"""Export a trained run: a self-contained artifact (default) or a Hugging Face directory (--format=hf):

  python -m flaxforge.launch.export --workdir=runs/20ng_bow --out=exported/20ng_bow
  python -m flaxforge.launch.export --workdir=runs/20ng_bow --out=exported/20ng_bow --platforms=cpu,cuda,tpu
  python -m flaxforge.launch.export --workdir=runs/minilm --format=hf --out=exported/minilm_hf

The artifact (jax.export program, safetensors weights, JSON vocabulary and labels, manifest) loads with
`flaxforge.serving.load` without the model code. The Hugging Face directory (config.json, model.safetensors
with LoRA adapters merged, the run's tokenizer.json, flaxforge_export.json naming the run and step) loads
with `transformers` `AutoModel.from_pretrained`; a classification head is not part of it. --out must be new,
empty or an earlier export of the same format, which is replaced; anything else (the run's own folder, its
base model) is refused.
"""
import json

from absl import flags

from flaxforge.launch import common

OUT = flags.DEFINE_string("out", None, "Folder to write: new, empty, or an earlier export of the same "
                          "format (replaced); other folders are refused.")
FORMAT = flags.DEFINE_enum("format", "artifact", ["artifact", "hf"], "artifact: jax.export + safetensors + JSON "
                           "(flaxforge.serving.load); hf: a Hugging Face directory (pretrained runs).")
STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
BEST = flags.DEFINE_bool("best", False, "Use the checkpoint with the best validation metric.")
PLATFORMS = flags.DEFINE_list("platforms", None, "Artifact only: platforms to lower for: cpu, cuda, rocm, tpu "
                              "(default: this machine's).")


def main(argv):
  del argv
  workdir = common.require_workdir()
  if not OUT.value:
    raise common.UserError("--out is required: the folder to write to, e.g. --out=exported/run")
  common.one_checkpoint(STEP.value, BEST.value)
  common.use_workdir_xla_flags(workdir)
  if FORMAT.value == "hf":
    common.init_distributed()
    from flaxforge.serving import export_hf  # pylint: disable=g-import-not-at-top
    print(json.dumps(export_hf.export_workdir(workdir, OUT.value, step=STEP.value, best=BEST.value)))
    return
  from flaxforge import serving  # pylint: disable=g-import-not-at-top
  manifest = serving.export(workdir, OUT.value, step=STEP.value, best=BEST.value,
                            platforms=tuple(PLATFORMS.value) if PLATFORMS.value else None)
  print(json.dumps({"out": OUT.value, "step": manifest["step"], "content_hash": manifest["content_hash"],
                    "jax_version": manifest["jax_version"]}))


if __name__ == "__main__":
  common.run(main)
