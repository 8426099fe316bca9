"""Export a trained classifier run as a self-contained artifact (jax.export program, safetensors weights,
JSON vocabulary and labels, manifest), loadable with `flaxforge.serving.load` without the model code:

  python -m flaxforge.launch.export --workdir=runs/20ng_bow --out=exported/20ng_bow
  python -m flaxforge.launch.export --workdir=runs/20ng_bow --out=exported/20ng_bow --platforms=cpu,cuda,tpu
"""
import json

from absl import flags

from flaxforge.launch import common

OUT = flags.DEFINE_string("out", None, "Folder to write the artifact to (replaced if it holds an earlier export).")
STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
BEST = flags.DEFINE_bool("best", False, "Use the checkpoint with the best validation metric.")
PLATFORMS = flags.DEFINE_list("platforms", None, "Platforms to lower for: cpu, cuda, rocm, tpu (default: this "
                              "machine's).")


def main(argv):
  del argv
  workdir = common.require_workdir()
  if not OUT.value:
    raise common.UserError("--out is required: the folder to write the artifact to, e.g. --out=exported/run")
  common.use_workdir_xla_flags(workdir)
  from flaxforge import serving  # pylint: disable=g-import-not-at-top
  manifest = serving.export(workdir, OUT.value, step=STEP.value, best=BEST.value,
                            platforms=tuple(PLATFORMS.value) if PLATFORMS.value else None)
  print(json.dumps({"out": OUT.value, "step": manifest["step"], "content_hash": manifest["content_hash"],
                    "jax_version": manifest["jax_version"]}))


if __name__ == "__main__":
  common.run(main)
