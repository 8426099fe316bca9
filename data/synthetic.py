"""Seeded random data of a chosen shape, in memory: benchmarks and smoke tests without a download.

`kind="dense"`: float32 features uniform in [0, 1) (an MLP's input); `kind="tokens"`: int32 ids (a text model's).
Labels are random, so only throughput is meaningful. The arrays match /work/shared/bench/common.py for the
same sizes (numpy RandomState(seed), features then labels), so the harness trains on the reference's data.
"""
import numpy as np

from flaxforge.data import dataset

DEFAULTS = dict(kind="dense", num_train=60_000, num_test=0, features=784, seq_len=100, vocab_size=10_000,
                num_classes=10, seed=0)


class ArraySource:
  """Random access over equal-length arrays, one example dict per index (what pipeline.Rows reads)."""

  def __init__(self, **arrays: np.ndarray):
    self.arrays = arrays

  def __len__(self):
    return len(next(iter(self.arrays.values())))

  def __getitem__(self, i):
    return {k: v[i] for k, v in self.arrays.items()}

  def __getitems__(self, indices):
    return [self[i] for i in indices]


def _arrays(o: dict, n: int, seed: int):
  rng = np.random.RandomState(seed)
  if o["kind"] == "dense":
    x = rng.rand(n, o["features"]).astype(np.float32)
  elif o["kind"] == "tokens":
    x = rng.randint(0, o["vocab_size"], size=(n, o["seq_len"])).astype(np.int32)
  else:
    raise ValueError(f"synthetic kind must be 'dense' or 'tokens', not {o['kind']!r}")
  y = rng.randint(0, o["num_classes"], size=(n,)).astype(np.int32)
  return ArraySource(inputs=x, label=y)


def load(cfg) -> dataset.Dataset:
  """`cfg.synthetic` (optional) overrides DEFAULTS."""
  o = {**DEFAULTS, **dict(cfg.get("synthetic", None) or {})}
  splits = {"train": _arrays(o, o["num_train"], o["seed"])}
  if o["num_test"]:
    splits["test"] = _arrays(o, o["num_test"], o["seed"] + 1)
  names = [str(i) for i in range(o["num_classes"])]
  info = {"task": "classification", "num_classes": o["num_classes"], "label_names": names}
  if o["kind"] == "dense":
    info["input_shape"] = [o["features"]]
  else:
    info.update(vocab_size=o["vocab_size"], seq_len=o["seq_len"])
  return dataset.Dataset(splits=splits, info=info, assets={"labels": names})
