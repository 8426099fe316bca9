"""Export a trained run: a self-contained artifact (default) or a Hugging Face directory (--format=hf):

  python -m flaxforge.launch.export --workdir=runs/20ng_bow --out=exported/20ng_bow
  python -m flaxforge.launch.export --workdir=runs/20ng_bow --out=exported/20ng_bow --platforms=cpu,cuda,tpu
  python -m flaxforge.launch.export --workdir=runs/minilm --format=hf --out=exported/minilm_hf
  python -m flaxforge.launch.export --workdir=runs/llama --format=hf --out=exported/llama_hf --max_shard_size=2GB

The artifact (jax.export program, safetensors weights, JSON vocabulary and labels, manifest) loads with
`flaxforge.serving.load` without the model code. The Hugging Face directory (config.json, model.safetensors
or its shards with model.safetensors.index.json, in the base model's dtype unless --dtype says otherwise,
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
CHECKPOINT = common.CheckpointChoice()
DTYPE = flags.DEFINE_enum("dtype", "auto", ["auto", "float32", "bfloat16", "float16"], "hf only: the weights' "
                          "dtype; auto: the base model's (float32 without one).")
MAX_SHARD_SIZE = flags.DEFINE_string("max_shard_size", "5GB", "hf only: larger weights are written as shards of "
                                     "at most this size (bytes, or e.g. 500MB, 5GB, 2GiB) with "
                                     "model.safetensors.index.json.")
PLATFORMS = flags.DEFINE_list("platforms", None, "Artifact only: platforms to lower for: cpu, cuda, rocm, tpu "
                              "(default: this machine's).")


def main(argv):
  del argv
  workdir = common.require_workdir()
  if not OUT.value:
    raise common.UserError("--out is required: the folder to write to, e.g. --out=exported/run")
  step, best = CHECKPOINT.chosen()
  common.use_workdir_xla_flags(workdir)
  if FORMAT.value == "hf":
    common.init_distributed()
    from flaxforge.serving import export_hf  # pylint: disable=g-import-not-at-top
    print(json.dumps(export_hf.export_workdir(workdir, OUT.value, step=step, best=best, dtype=DTYPE.value,
                                              max_shard_size=MAX_SHARD_SIZE.value)))
    return
  from flaxforge import serving  # pylint: disable=g-import-not-at-top
  manifest = serving.export(workdir, OUT.value, step=step, best=best,
                            platforms=tuple(PLATFORMS.value) if PLATFORMS.value else None)
  print(json.dumps({"out": OUT.value, "step": manifest["step"], "content_hash": manifest["content_hash"],
                    "jax_version": manifest["jax_version"]}))


if __name__ == "__main__":
  common.run(main)
