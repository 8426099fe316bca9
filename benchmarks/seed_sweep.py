"""Accuracy over random seeds, and over the values of one config field: how a config's hyperparameter is chosen
(on the validation accuracy) and how its test accuracy spreads. One `flaxforge.launch.train` process per run
(benchmarks/runner.py `run`: from the repository root; a failed run raises with its stderr).

  PYTHONPATH=. .venv/bin/python -m benchmarks.seed_sweep --config=launch/configs/text_cnn_20ng.py \
      --seeds=0,1,2,3,4,5,6,7 --field=optimizer.learning_rate --values=1e-3,4e-3 \
      --set=data.manual_dir=../shared/datasets/20newsgroups --out=/tmp/sweep.jsonl

`--seeds` sets both the initialisation seed and the data order; `--data_seed=0` keeps the order fixed.
"""
import argparse
import json
import pathlib
import statistics
import sys
import tempfile

from benchmarks import records, runner


def run(config: str, overrides: dict, workdir: pathlib.Path) -> dict:
  runner.run([sys.executable, "-m", "flaxforge.launch.train", f"--config={config}", f"--workdir={workdir}",
              "--config.train.progress_bar=false", *[f"--config.{k}={v}" for k, v in overrides.items()]])
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  last = {r["split"]: r for r in records}
  return {"validation": last["validation"]["accuracy"], "test": last["test"]["accuracy"]}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--config", required=True)
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--data_seed", type=int, default=None)
  p.add_argument("--field", default="")
  p.add_argument("--values", default="")
  p.add_argument("--set", action="append", default=[], help="field=value for every run")
  p.add_argument("--out", default="/tmp/flaxforge-seed-sweep.jsonl")
  a = p.parse_args()
  fixed = dict(s.split("=", 1) for s in a.set)
  values = a.values.split(",") if a.field else [None]
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    fixed.setdefault("data.data_dir", f"{tmp}/tfds")  # prepared once, shared by the runs
    for value in values:
      for seed in map(int, a.seeds.split(",")):
        overrides = {**fixed, "seed": seed, "data.seed": seed if a.data_seed is None else a.data_seed}
        if a.field:
          overrides[a.field] = value
        result = {"config": a.config, "field": a.field, "value": value, "seed": seed,
                  **run(a.config, overrides, pathlib.Path(tmp) / f"run_{value}_{seed}")}
        print(json.dumps(result), flush=True)
        records.append(a.out, [result])
        rows.append(result)
  print(f"\n| {a.field or 'config'} | seeds | validation median (min) | test median (min-max) |\n|---|---|---|---|")
  for value in values:
    runs = [r for r in rows if r["value"] == value]
    val, test = [r["validation"] for r in runs], [r["test"] for r in runs]
    print(f"| {value if a.field else a.config} | {len(runs)} | {statistics.median(val):.3f} ({min(val):.3f}) | "
          f"{statistics.median(test):.3f} ({min(test):.3f}-{max(test):.3f}) |")


if __name__ == "__main__":
  main()
