"""Evaluate a checkpoint without retraining: python -m flaxforge.launch.eval --workdir=runs/digits [--step=N|--best]

Prints the metrics as one JSON object on the last line of output.
"""
import json

from absl import flags

from flaxforge.launch import common

STEP = flags.DEFINE_integer("step", None, "Checkpoint step to evaluate (default: the latest).")
BEST = flags.DEFINE_bool("best", False, "Evaluate the checkpoint with the best validation metric.")
SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate.")
DATA_DIR = flags.DEFINE_string("data_dir", "", "Where the run's prepared data now lies, if it was moved.")


def main(argv):
  del argv
  workdir = common.require_workdir()
  common.use_workdir_xla_flags(workdir)
  common.init_distributed()
  from flaxforge.trainer import restore  # pylint: disable=g-import-not-at-top
  result = restore.evaluate_workdir(workdir, step=STEP.value, best=BEST.value, split=SPLIT.value,
                                    data_dir=DATA_DIR.value)
  print(json.dumps(result))


if __name__ == "__main__":
  common.run(main)
