"""Throughput of the input pipeline alone (data.pipeline.train_batches, as the trainer configures it).
Prints one JSON line.  python -m benchmarks.pipeline_speed --workload text_cnn [--batches 3000]"""
import argparse
import json
import time

from absl import flags

from benchmarks import workloads
from flaxforge.data import pipeline
from flaxforge.trainer import run_data


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--workload", required=True)
  p.add_argument("--batches", type=int, default=3000)
  args = p.parse_args()
  flags.FLAGS.mark_as_parsed()  # Grain reads absl flags
  config = workloads.config(args.workload)
  data = run_data.load_data(config)
  it = pipeline.train_batches(data.rows["train"], config.data.batch_size, args.batches + 200, seed=0, transform=data.transform,
                              threads=config.data.threads, prefetch=config.data.prefetch)
  for _ in range(200):  # start-up: threads, first permutation
    next(it)
  t = time.perf_counter()
  for _ in range(args.batches):
    next(it)
  eps = args.batches * config.data.batch_size / (time.perf_counter() - t)
  print(json.dumps(dict(workload=args.workload, impl="input pipeline", examples_per_s=eps)), flush=True)


if __name__ == "__main__":
  main()
