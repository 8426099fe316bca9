"""Seeded random data of a chosen shape, in memory: benchmarks and smoke tests without a download.

`kind="dense"`: float32 features uniform in [0, 1) (an MLP's input); `kind="tokens"`: int32 ids (a text model's).
Labels are random, so only throughput is meaningful. The arrays match /work/shared/bench/common.py for the
same sizes (numpy RandomState(seed), features then labels), so the harness trains on the reference's data.
"""
import numpy as np

from flaxforge.data import dataset, fields


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


def _arrays(o: fields.Synthetic, n: int, seed: int):
  rng = np.random.RandomState(seed)
  if o.kind == "dense":
    x = rng.rand(n, o.features).astype(np.float32)
  else:
    x = rng.randint(0, o.vocab_size, size=(n, o.seq_len)).astype(np.int32)
  y = rng.randint(0, o.num_classes, size=(n,)).astype(np.int32)
  return ArraySource(inputs=x, label=y)


def load(cfg) -> dataset.Dataset:
  """`cfg` is `config.data`; its `synthetic` section (data.fields.Synthetic) gives the sizes."""
  o = fields.Synthetic.read(cfg["synthetic"] if "synthetic" in cfg else None)
  splits = {"train": _arrays(o, o.num_train, o.seed)}
  if o.num_test:
    splits["test"] = _arrays(o, o.num_test, o.seed + 1)
  names = [str(i) for i in range(o.num_classes)]
  info = {"task": "classification", "num_classes": o.num_classes, "label_names": names}
  if o.kind == "dense":
    info["input_shape"] = [o.features]
  else:
    info.update(vocab_size=o.vocab_size, seq_len=o.seq_len)
  return dataset.Dataset(splits=splits, info=info, assets={"labels": names})
