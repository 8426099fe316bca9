"""Class labels and the splits held out of a dataset's rows: label names <-> ids, a seeded stratified hold-out
(`hold_out`, which every loader of labelled rows calls), and a split by position (`by_position`, for ordered
text). A validation fraction of 0 means no validation split: every training row trains (a refit after choosing
settings on validation); the builders then write no such split (TFDS cannot write an empty one).
"""
import dataclasses
import re
from typing import Iterable, Sequence

import numpy as np

from flaxforge.core.errors import UserError
from flaxforge.data.dataset import SPLITS


@dataclasses.dataclass(frozen=True)
class LabelEncoder:
  """Label names <-> class ids; ids are positions in `names`."""
  names: tuple[str, ...]

  def encode(self, values: Iterable) -> np.ndarray:
    index = {n: i for i, n in enumerate(self.names)}
    try:
      return np.array([index[str(v)] for v in values], np.int32)
    except KeyError as e:
      raise UserError(f"unknown label {e.args[0]!r}; known labels are: {', '.join(self.names)}") from None

  def decode(self, ids: Iterable[int]) -> list[str]:
    return [self.names[int(i)] for i in ids]

  def to_json(self) -> list[str]:
    return list(self.names)

  @classmethod
  def from_json(cls, names: Sequence[str]) -> "LabelEncoder":
    return cls(tuple(names))


def label_encoder(values: Iterable) -> LabelEncoder:
  """Names = the sorted distinct values as strings (numerically sorted when all are integers)."""
  names = {str(v) for v in values}
  numeric = all(re.fullmatch(r"[+-]?\d+", n) for n in names)
  return LabelEncoder(tuple(sorted(names, key=int if numeric else None)))


def holdout(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
  """Seeded, stratified split of indices: one array per fraction, then the rest (sorted indices).

  Each class gives round(fraction * its size) examples to each held-out part, so small classes may give none.
  A part's examples depend only on the seed and the fractions before it (each class is permuted once,
  whatever the fractions).
  """
  rng = np.random.default_rng(seed)
  parts = [[] for _ in range(len(fractions) + 1)]
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    start = 0
    for part, fraction in zip(parts, fractions):
      n = int(round(fraction * len(idx)))
      part.append(idx[start:start + n])
      start += n
    parts[-1].append(idx[start:])
  return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def hold_out(labels: np.ndarray, *, validation: float | None, test: float | None = None, seed: int, where: str,
             size: str, add: str = "") -> dict[str, np.ndarray]:
  """Row indices (sorted) per split of the rows `labels` [N] stratify: a "test" part (when `test` is not None)
  and a "validation" part (when `validation` is neither None nor 0) held out, "train" the rest; in the order
  train, validation, test.

  The test part is drawn first, so a refit (validation 0) tests on the same rows as the run that chose its
  settings. UserError (`refuse_empty`, naming `where` and `size`) when a split gets no row.
  """
  fractions = {name: f for name, f in (("test", test), ("validation", validation)) if f is not None}
  *held, train = holdout(labels, list(fractions.values()), seed)
  parts = without_validation({"train": train, **dict(zip(fractions, held))}, validation)
  parts = {name: parts[name] for name in SPLITS if name in parts}
  refuse_empty(parts, where, size, add)
  return parts


def by_position(n: int, validation: float, test: float) -> dict[str, tuple[int, int]]:
  """(start, end) of each split of `n` ordered items: train | validation | test, the last two of
  int(fraction * n) items each; no "validation" entry when `validation` is 0."""
  val, test = int(validation * n), int(test * n)
  return without_validation({"train": (0, n - val - test), "validation": (n - val - test, n - test),
                             "test": (n - test, n)}, validation)


def without_validation(parts: dict, validation_fraction: float | None) -> dict:
  """`parts` (split name -> rows, or anything else per split) without its "validation" entry when
  `validation_fraction` is 0; the caller has held none out. A positive fraction is kept as is."""
  if validation_fraction == 0:
    return {name: part for name, part in parts.items() if name != "validation"}
  return parts


def refuse_empty(parts: dict, where: str, size: str, add: str = "") -> None:
  """One-line UserError for the first split in `parts` with no rows, naming the fix: `add` ("add rows"),
  else the fraction to change (a validation split can also be left out with validation_fraction=0)."""
  for name, idx in parts.items():
    if len(idx):
      continue
    if name == "train":
      fix = "lower --config.data.validation_fraction" + (" or --config.data.test_fraction" if "test" in parts else "")
    else:
      fix = f"raise --config.data.{name}_fraction"
      if name == "validation":
        fix += " (or set it to 0 to train on every training row without a validation split)"
    raise UserError(f"{where}: the {name} split is empty ({size}); {f'{add} or ' if add else ''}{fix}")
