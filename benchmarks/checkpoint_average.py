"""Does averaging fine-tuned weights help? The float parameters of several checkpoints (one run's epochs,
or runs from the same pretrained start: a "model soup", Wortsman et al. 2022, arXiv:2203.05482) averaged
element-wise, then evaluated on one split of the first run's recorded data. Prints one JSON line.

  TFDS_DATA_DIR=/tmp/flaxforge-bench-tfds PYTHONPATH=. .venv/bin/python -m benchmarks.checkpoint_average \
      validation [--data=OTHER_RUN_DIR] RUN_DIR:STEP [RUN_DIR:STEP ...]

Every run must have the same model (shapes); integer leaves (step counters, RNG keys) come from the first.
--data: evaluate on another run's recorded data instead (e.g. the same posts prepared at sequence 512).
"""
import json
import sys

import jax
import jax.numpy as jnp

from flaxforge.trainer import evaluate, restore, run_data
from flaxforge.trainer import workdir as workdir_lib


def main(split: str, checkpoints: list[str], data_run: str = ""):
  runs = [restore.restore(w, step=int(s), model_only=True) for w, s in (c.rsplit(":", 1) for c in checkpoints)]
  run, state = runs[0], runs[0].state
  state[0] = jax.tree.map(lambda *xs: sum(xs) / len(xs) if jnp.issubdtype(xs[0].dtype, jnp.floating) else xs[0],
                          *[r.state[0] for r in runs])
  if data_run:
    workdir = workdir_lib.resolve(data_run)
    config = workdir_lib.load_config(workdir)
    data = run_data.load_data(config, info=workdir_lib.load_info(workdir),
                           dataset=workdir_lib.open_data(workdir, config, ""))
  else:
    data = run_data.load_data(run.config, info=run.info, dataset=workdir_lib.open_data(run.workdir, run.config, ""))
  result = evaluate.evaluate(state, evaluate.make_eval_step(run.structure, run.mesh, run.config, run.info),
                             data.split(split), global_batch=run.config.data.eval_batch_size, mesh=run.mesh,
                             info=run.info, transform=data.transform)
  print(json.dumps({"split": split, "checkpoints": checkpoints, **({"data": data_run} if data_run else {}),
                    "accuracy": round(float(result["accuracy"]), 4), "loss": round(float(result["loss"]), 4)}))


if __name__ == "__main__":
  data_flag = [a for a in sys.argv[2:] if a.startswith("--data=")]
  main(sys.argv[1], [a for a in sys.argv[2:] if a not in data_flag], data_flag[0][len("--data="):] if data_flag else "")
