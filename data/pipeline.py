"""Batches as a pure function of (seed, global step): a Grain MapDataset over batch indices.

Element k of the training dataset is global batch k: positions [k*B, (k+1)*B) of the endless sequence of
seeded per-epoch permutations. Each process materialises only its own rows of that batch, so every process
count sees the same global batches, and the Grain iterator's position (`next_index`) is the step.
Evaluation uses the same mechanism without shuffling, padding the last batch and marking pads in `mask`.
"""
import functools
import threading
from typing import Any, Sequence

import grain
import numpy as np

Batch = dict[str, np.ndarray]


class Rows:
  """A split as numpy arrays indexed by example, read from its source in full (the in-memory fast path)
  or batch by batch (`source.__getitems__`) for data larger than memory."""

  def __init__(self, source: Sequence[dict[str, Any]], in_memory: bool = True):
    self._source = source
    arrays = getattr(source, "arrays", None)  # a columnar source (data.synthetic) needs no per-row read
    if in_memory:
      self._arrays = dict(arrays) if arrays is not None else _stack(_read(source, range(len(source))))
    else:
      self._arrays = None

  @property
  def in_memory(self) -> bool:
    return self._arrays is not None

  def arrays(self) -> Batch:
    """Every row, as the in-memory arrays (only when in_memory)."""
    return dict(self._arrays)

  def __len__(self):
    return len(self._source)

  def column(self, name: str, chunk: int = 4096) -> np.ndarray:
    """One field of every row (e.g. "label"), read in chunks of rows when not in memory."""
    if self._arrays is not None:
      return self._arrays[name]
    parts = [self.take(np.arange(start, min(start + chunk, len(self))))[name] for start in range(0, len(self), chunk)]
    return np.concatenate(parts) if parts else np.zeros(0)

  def take(self, indices: np.ndarray) -> Batch:
    if self._arrays is not None:
      return {k: v[indices] for k, v in self._arrays.items()}
    return _stack(_read(self._source, indices.tolist()))


def _read(source, indices):
  getitems = getattr(source, "__getitems__", None)
  return getitems(list(indices)) if getitems else [source[i] for i in indices]


def _stack(examples: list[dict[str, Any]]) -> Batch:
  return {k: np.stack([np.asarray(e[k]) for e in examples]) for k in examples[0]}


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
  """The order of the n training rows in `epoch`, a seeded permutation."""
  return np.random.default_rng([seed, epoch]).permutation(n)


def rows_at(positions, n: int, orders, first_epoch=0):
  """The row indices at `positions` of the epochs' row orders laid end to end: position p is row
  `orders[p // n - first_epoch][p % n]`, where `orders[i]` is epoch `first_epoch + i`'s order. Global batch
  k is positions [k*B, (k+1)*B). The one statement of which rows form a batch: the host pipeline calls it on
  numpy arrays, the device-resident step (trainer/feed.py) on traced ones."""
  return orders[positions // n - first_epoch, positions % n]


class _BatchAt:
  """Maps a batch index to this process's rows of that global batch (picklable for Grain workers)."""

  def __init__(self, rows: Rows, global_batch: int, *, seed: int, shuffle: bool, repeat: bool,
               process_index: int, process_count: int, transform=None):
    self.rows, self.global_batch, self.seed, self.shuffle, self.repeat = rows, global_batch, seed, shuffle, repeat
    self.local_batch = global_batch // process_count
    self.offset = process_index * self.local_batch
    self.transform = transform
    self._lock = threading.Lock()

  @functools.lru_cache(maxsize=2)
  def _orders(self, first: int, last: int) -> np.ndarray:
    """The row orders of epochs first..last, stacked (cached: a batch rarely leaves its epoch)."""
    n = len(self.rows)
    return np.stack([epoch_order(n, self.seed, e) if self.shuffle else np.arange(n) for e in range(first, last + 1)])

  def __call__(self, k: int) -> Batch:
    n = len(self.rows)
    positions = k * self.global_batch + self.offset + np.arange(self.local_batch)
    valid = positions < n if not self.repeat else np.ones(self.local_batch, bool)
    positions = np.where(valid, positions, 0)
    first, last = int(positions.min()) // n, int(positions.max()) // n
    with self._lock:
      orders = self._orders(first, last)
    batch = self.rows.take(rows_at(positions, n, orders, first))
    loss_mask = batch.pop("loss_mask", None)  # per token (supervised fine-tuning): pads stay 0
    batch["mask"] = valid.astype(np.float32) if loss_mask is None else loss_mask * valid[:, None]
    return self.transform(batch) if self.transform else batch


def _dataset(batch_at: _BatchAt, start: int, stop: int, threads: int, prefetch: int):
  if threads < 0:  # auto: rows in memory need no reader threads, whose pool only takes cycles from XLA
    threads = 0 if batch_at.rows.in_memory else 2  # (BENCHMARKS.md "Issue 7: performance", change 2)
  ds = grain.MapDataset.range(start, stop).map(batch_at)
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch))


def train_batches(rows: Rows, global_batch: int, num_steps: int, *, seed: int, process_index: int = 0,
                  process_count: int = 1, transform=None, threads: int = -1, prefetch: int = 8):
  """A checkpointable Grain iterator over global batches 0..num_steps-1 (this process's rows of each)."""
  batch_at = _BatchAt(rows, global_batch, seed=seed, shuffle=True, repeat=True,
                      process_index=process_index, process_count=process_count, transform=transform)
  return iter(_dataset(batch_at, 0, num_steps, threads, prefetch))


def eval_batches(rows: Rows, global_batch: int, *, process_index: int = 0, process_count: int = 1,
                 transform=None, threads: int = -1, prefetch: int = 4):
  """One ordered pass over the split; the last batch is padded and its pads have mask 0."""
  batch_at = _BatchAt(rows, global_batch, seed=0, shuffle=False, repeat=False,
                      process_index=process_index, process_count=process_count, transform=transform)
  num_batches = -(-len(rows) // global_batch)
  return iter(_dataset(batch_at, 0, num_batches, threads, prefetch))
