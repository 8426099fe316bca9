"""Evaluate a checkpoint without retraining: flaxforge eval --workdir=DIR [--step=N | --best | --latest]
[--report_dir=DIR]

By default the step the run tested (early stopping's best, else the newest; one line on stderr says which).

Prints the metrics as one JSON object on the last line of output. For classifiers it first prints the
per-class table (precision, recall, F1 and support, as scikit-learn's classification_report), writes a report
(<workdir>/report/test_stepN.json and the confusion matrix as test_stepN_confusion.png) and names the files. A
run that cannot be written to (shared or archived) still prints its metrics and says the report was not written.
"""
import sys

from absl import flags

from flaxforge.launch import common

CHECKPOINT = common.CheckpointChoice()
SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate.")
REPORT_DIR = flags.DEFINE_string("report_dir", None, "Where classifiers' reports go (default: <workdir>/report).")
DATA_DIR = flags.DEFINE_string("data_dir", "", "Where the run's prepared data now lies, if it was moved.")


def main(argv):
  del argv
  workdir = common.require_workdir()
  step, best = CHECKPOINT.chosen()
  common.use_workdir_xla_flags(workdir)
  common.init_distributed()
  from flaxforge.trainer import evaluate  # pylint: disable=g-import-not-at-top
  result = evaluate.evaluate_workdir(workdir, step=step, best=best, split=SPLIT.value,
                                     report_dir=REPORT_DIR.value, data_dir=DATA_DIR.value)
  if "report_error" in result:
    print(f"warning: {result.pop('report_error')}", file=sys.stderr)
  table = result.pop("classification_report", None)
  written = result.get("report")
  common.print_result(result, *([table] if table else []), *([f"wrote {', '.join(written)}"] if written else []))


if __name__ == "__main__":
  common.run(main)
