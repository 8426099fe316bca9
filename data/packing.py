"""Sequence packing: several language-model / SFT examples per row of seq_len positions.

Each packed row carries, besides the examples' own features (inputs, label, loss_mask, ...), `segment_ids`
(1, 2, ... for the row's examples in order, 0 on padding) and `positions` (0, 1, ... restarting at each
example, 0 on padding). With models/segments.py's attention mask no example sees another, so a packed row
computes what its examples would alone; the per-token loss mask travels with each example.

Algorithm: best fit decreasing (BFD) within windows of `window` consecutive examples of the epoch's seeded
order. Inside a window the pieces are taken longest first, each into the bin whose free space fits it most
tightly (the earliest such bin on a tie), else into a new bin; the window's bins are then emitted in a
seeded random order. This is TRL's default (`trl/data_utils.py` `_pack_bfd`, applied by `pack_dataset`
through `Dataset.map(batched=True)`, i.e. to batches of 1,000 examples) and gives the same bins on the same
examples. It is chosen over greedy first fit because sorting a window puts the long examples down first
and fills the gaps with short ones, which leaves less padding on chat-like length mixes. Windows rather
than the whole split: BFD sorts by length, so over a whole split it would ignore the shuffle and put the
same examples together every epoch, while within a window of the epoch's order rows change with the epoch;
windows also keep a plan's cost independent of the dataset's size and bound what a resume recomputes (one
window's plan, from lengths only).

Examples longer than seq_len: `overflow="truncate"` keeps their first seq_len positions (TRL's "bfd", and
what unpacked SFT does); `overflow="split"` cuts them into pieces of seq_len (the last one shorter), each
its own segment with positions from 0, packed like any example (TRL's "bfd_split": no token lost, for
corpora). No other example is ever split across rows. Empty examples are dropped.

Resume: the packer is a pure function of (lengths, seq_len, window, seed) and its position, so its state
is a few integers (`get_state`, JSON-serialisable) and `set_state` continues with exactly the rows that
would have come next. Planning needs only the lengths: every process plans the same global rows and
`pack` materialises only its own.
"""
import bisect
from typing import Sequence

import numpy as np

from flaxforge.core.errors import UserError
from flaxforge.data import pipeline

OVERFLOW = ("truncate", "split")
Row = list[tuple[int, int, int]]  # the (example index, start, stop) pieces packed into one row, in order


def next_token(ids, loss_mask=None) -> dict[str, np.ndarray]:
  """A token sequence ids [n] as a next-token example of n - 1 positions: inputs ids[:-1], label ids[1:],
  and loss_mask float32 (the given per-token mask of the label tokens, loss_mask[1:], else ones)."""
  ids = np.asarray(ids, np.int32)
  mask = np.ones(len(ids), np.float32) if loss_mask is None else np.asarray(loss_mask, np.float32)
  return {"inputs": ids[:-1], "label": ids[1:], "loss_mask": mask[1:]}


def best_fit_decreasing(lengths: Sequence[int], seq_len: int) -> list[list[int]]:
  """Indices of `lengths` (each 1..seq_len) grouped into bins of total at most seq_len: longest first
  (ties in index order), each into the bin with the least free space that fits it (the earliest on a
  tie), else a new bin. Bins are listed in the order they were opened."""
  bins, free = [], []  # free: sorted (free space, bin index) of bins with room left
  for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
    at = bisect.bisect_left(free, (lengths[i], -1))
    if at < len(free):
      space, b = free.pop(at)
    else:
      space, b = seq_len, len(bins)
      bins.append([])
    bins[b].append(i)
    if space - lengths[i] > 0:
      bisect.insort(free, (space - lengths[i], b))
  return bins


class Packer:
  """The rows of packed examples, in order, over epochs of `lengths` (positions per example).

  Args:
    lengths: int [n], each example's length in positions (what `pack` will read from it).
    seq_len: positions per row.
    window: examples planned together (BFD within each window of the epoch's order).
    seed: the epoch orders (data/pipeline.py `epoch_order`) and each window's row order.
    shuffle: False keeps examples and rows in index order (evaluation).
    overflow: "truncate" or "split", for examples longer than seq_len (see the module docstring).
    repeat: False stops after one epoch.
  UserError for a bad seq_len, window or overflow, or no non-empty example.
  """

  def __init__(self, lengths, seq_len: int, *, window: int = 1000, seed: int = 0, shuffle: bool = True,
               overflow: str = "truncate", repeat: bool = True):
    if overflow not in OVERFLOW:
      raise UserError(f"unknown packing overflow {overflow!r}; use one of: {', '.join(OVERFLOW)}")
    if seq_len < 1 or window < 1:
      raise UserError(f"packing needs seq_len >= 1 and window >= 1 (got {seq_len}, {window}); raise them")
    self.lengths = np.asarray(lengths, np.int64)
    if not (self.lengths > 0).any():
      raise UserError("every example is empty, so there is nothing to pack; check the data")
    self.seq_len, self.window, self.seed, self.shuffle = int(seq_len), int(window), int(seed), shuffle
    self.overflow, self.repeat = overflow, repeat
    self._plan_key, self._plan, self._order_key, self._order = None, None, None, None
    self.set_state({"epoch": 0, "window": 0, "row": 0, "rows": 0, "pieces": 0, "tokens": 0})

  def get_state(self) -> dict[str, int]:
    """The position (epoch, window, rows of it already emitted) and the running counts `stats` reads."""
    return dict(self._state)

  def set_state(self, state: dict[str, int]) -> None:
    self._state = {k: int(state[k]) for k in ("epoch", "window", "row", "rows", "pieces", "tokens")}

  def _pieces(self, example: int) -> list[tuple[int, int, int]]:
    n = int(self.lengths[example])
    if self.overflow == "truncate":
      return [(example, 0, min(n, self.seq_len))] if n else []
    return [(example, s, min(s + self.seq_len, n)) for s in range(0, n, self.seq_len)]

  def _window_rows(self, epoch: int, window: int) -> list[Row]:
    """The rows of one window, in emission order (cached: a window serves many calls)."""
    if self._plan_key != (epoch, window):
      if self._order_key != epoch:
        n = len(self.lengths)
        self._order = pipeline.epoch_order(n, self.seed, epoch) if self.shuffle else np.arange(n)
        self._order_key = epoch
      order = self._order
      pieces = [p for e in order[window * self.window:(window + 1) * self.window] for p in self._pieces(int(e))]
      rows = [[pieces[i] for i in b] for b in best_fit_decreasing([p[2] - p[1] for p in pieces], self.seq_len)]
      if self.shuffle:
        rows = [rows[i] for i in np.random.default_rng([self.seed, epoch, window]).permutation(len(rows))]
      self._plan_key, self._plan = (epoch, window), rows
    return self._plan

  def __iter__(self):
    return self

  def __next__(self) -> Row:
    """The next row: its pieces (example index, start, stop), in the order `pack` lays them out."""
    windows = -(-len(self.lengths) // self.window)
    s = self._state
    while True:
      if s["window"] >= windows:
        if not self.repeat:
          raise StopIteration
        s.update(epoch=s["epoch"] + 1, window=0, row=0)
      rows = self._window_rows(s["epoch"], s["window"])
      if s["row"] < len(rows):
        break
      s.update(window=s["window"] + 1, row=0)
    row = rows[s["row"]]
    s.update(row=s["row"] + 1, rows=s["rows"] + 1, pieces=s["pieces"] + len(row),
             tokens=s["tokens"] + sum(stop - start for _, start, stop in row))
    return row

  def next_rows(self, count: int) -> list[Row]:
    """Up to `count` next rows (fewer only at the end of a pass that does not repeat)."""
    rows = []
    for row in self:
      rows.append(row)
      if len(rows) == count:
        break
    return rows

  def stats(self) -> dict[str, float]:
    """What packing saved on the rows emitted so far: `rows` packed; `unpacked_rows`, one per piece, the
    rows the same tokens take when each example is padded to seq_len alone; `tokens` (real ones);
    `padding_removed`, the share of the unpacked rows' padding that packing removed (0..1); and
    `rows_ratio`, unpacked_rows / rows (the steps packing saves)."""
    s, L = self._state, self.seq_len
    unpacked_padding = s["pieces"] * L - s["tokens"]
    packed_padding = s["rows"] * L - s["tokens"]
    return {"rows": s["rows"], "unpacked_rows": s["pieces"], "tokens": s["tokens"],
            "padding_removed": 1.0 - packed_padding / unpacked_padding if unpacked_padding else 0.0,
            "rows_ratio": s["pieces"] / s["rows"] if s["rows"] else 1.0}


def pack(examples, rows: Sequence[Row], seq_len: int) -> dict[str, np.ndarray]:
  """The packed arrays of `rows` (from a Packer) over `examples` (random access, each a dict of 1-D arrays
  of the example's length, e.g. `next_token`'s): every feature [R, seq_len] in its own dtype, 0 on
  padding, plus segment_ids and positions int32 [R, seq_len]. `rows` must not be empty."""
  out, first = None, None
  for r, row in enumerate(rows):
    at = 0
    for segment, (index, start, stop) in enumerate(row, 1):
      example = examples[index]
      if out is None:
        first = example
        out = {k: np.zeros((len(rows), seq_len) + np.shape(v)[1:], np.asarray(v).dtype) for k, v in first.items()}
        out["segment_ids"] = np.zeros((len(rows), seq_len), np.int32)
        out["positions"] = np.zeros((len(rows), seq_len), np.int32)
      for k in first:
        out[k][r, at:at + stop - start] = np.asarray(example[k])[start:stop]
      out["segment_ids"][r, at:at + stop - start] = segment
      out["positions"][r, at:at + stop - start] = np.arange(stop - start)
      at += stop - start
  return out


def lengths_of(arrays: dict[str, np.ndarray]) -> np.ndarray:
  """Each row's length in positions for packing: through its last loss token when rows carry a per-token
  `loss_mask` [N, T] (what follows it changes no loss: attention is causal), else the whole row."""
  mask = arrays.get("loss_mask")
  if mask is None:
    return np.full(len(next(iter(arrays.values()))), next(iter(arrays.values())).shape[1], np.int64)
  last = mask.shape[1] - np.argmax(mask[:, ::-1] > 0, axis=1)
  return np.where(mask.any(axis=1), last, 0)


class Batches:
  """Global batches of `global_batch` packed rows over in-memory `arrays` (equal-length rows [N, T] whose
  first `lengths_of` positions are the example), this process's share of each (process_index of
  process_count, in order), for the training loop: `next` gives {features..., segment_ids, positions,
  mask (the per-token loss mask)} [local batch, seq_len], and `get_state` / `set_state` the packer's
  position, the data position a checkpoint keeps. Every process plans the same rows."""

  def __init__(self, arrays: dict[str, np.ndarray], seq_len: int, global_batch: int, *, seed: int, window: int,
               process_index: int = 0, process_count: int = 1, transform=None):
    self.arrays, self.seq_len, self.global_batch, self.transform = arrays, seq_len, global_batch, transform
    self.packer = Packer(lengths_of(arrays), seq_len, window=window, seed=seed)
    self.local = global_batch // process_count
    self.offset = process_index * self.local

  def __iter__(self):
    return self

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    return {k: v[i] for k, v in self.arrays.items()}

  def __next__(self) -> dict[str, np.ndarray]:
    rows = self.packer.next_rows(self.global_batch)
    batch = pack(self, rows[self.offset:self.offset + self.local], self.seq_len)
    batch["mask"] = batch.pop("loss_mask", None)
    if batch["mask"] is None:
      batch["mask"] = (batch["segment_ids"] > 0).astype(np.float32)
    return self.transform(batch) if self.transform else batch

  def get_state(self) -> dict[str, int]:
    return self.packer.get_state()

  def set_state(self, state: dict[str, int]) -> None:
    self.packer.set_state(state)


def rows_per_epoch(arrays: dict[str, np.ndarray], seq_len: int, *, seed: int, window: int) -> int:
  """Packed rows in the first epoch (what a training plan counts steps per epoch by)."""
  return sum(1 for _ in Packer(lengths_of(arrays), seq_len, window=window, seed=seed, repeat=False))


def stats_of(state: dict[str, int], seq_len: int) -> dict[str, float]:
  """`Packer.stats` of a packer's saved state (the counts since the run's first row)."""
  packer = Packer([1], seq_len)
  packer.set_state(state)
  return packer.stats()


def summary(stats: dict[str, float], seq_len: int) -> str:
  """One line from `stats_of`: rows, examples and the padding packing removed."""
  return (f"packing: {stats['unpacked_rows']:,} examples in {stats['rows']:,} rows of {seq_len} "
          f"({stats['rows_ratio']:.2f} per row); {stats['padding_removed']:.0%} of the padding removed")
