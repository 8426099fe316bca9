"""Class labels and the splits held out of a dataset's rows: label names <-> ids, a label cell as its class
name (`label_name`: one rule for missing cells in every reader), what a user should hear about the labels and
the rows dropped (`Report`), a seeded stratified hold-out (`hold_out`, which every loader of labelled rows
calls), and a split by position (`by_position`, for ordered text). A validation fraction of 0 means no
validation split: every training row trains (a refit after choosing settings on validation); the builders then
write no such split (TFDS cannot write an empty one).
"""
import dataclasses
import math
import re
import sys
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


# A cell holding one of these (surrounding whitespace stripped) is a missing value, never a class or a text
# named "null" (README); pandas' default missing markers, less the ones that are plausible labels ("NA", "n/a").
MISSING = frozenset(("", "NaN", "nan", "null", "None"))
FEW_ROWS = 5  # a class with fewer training rows than this is warned about: too few to learn or to test
SHOWN_ROWS = 5  # dropped rows named on stderr; data.json lists them all


def missing(value) -> bool:
  """Whether a cell (of a text or label column) is a missing value: None, a float NaN, or a string in MISSING."""
  return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() in MISSING


def label_name(value, case: str = "keep") -> str | None:
  """A label cell as its class name: a string without surrounding whitespace, lower-cased when `case` is
  "lower" (data.label_case); None for a missing cell (`missing`)."""
  if missing(value):
    return None
  name = str(value).strip()
  return name.lower() if case == "lower" else name


@dataclasses.dataclass
class Report:
  """What preparing a user's file found that the user should hear: `warnings` (one line each) and the file
  rows `dropped` (numbers as the file's own errors name them: the header is row 1). `say` prints it on
  stderr; `to_json` is its part of the run's data.json (data/records.py)."""
  warnings: list[str] = dataclasses.field(default_factory=list)
  dropped: list[int] = dataclasses.field(default_factory=list)

  def drop(self, file_name: str, rows: Sequence[int], why: str) -> None:
    """Records `rows` as dropped for `why` ("a missing label"), with one warning line naming the first few."""
    if not len(rows):
      return
    rows = sorted(int(r) for r in rows)
    shown = ", ".join(map(str, rows[:SHOWN_ROWS])) + (", ..." if len(rows) > SHOWN_ROWS else "")
    self.dropped = sorted(self.dropped + rows)
    self.warnings.append(f"{file_name}: dropped {len(rows)} row{'' if len(rows) == 1 else 's'} with {why} (rows "
                         f"{shown}; data.json lists all)")

  def check_labels(self, file_name: str, names: Sequence[str], train_ids: np.ndarray) -> None:
    """Warns about class names that differ only by case (each is a class of its own) and about classes with
    fewer than FEW_ROWS training rows (`train_ids`: the training rows' class ids)."""
    alike = {}
    for name in names:
      alike.setdefault(name.casefold(), []).append(name)
    for group in (g for g in alike.values() if len(g) > 1):
      self.warnings.append(f"{file_name}: labels {' and '.join(map(repr, group))} differ only by case, so each "
                           "is a class of its own; pass --config.data.label_case=lower to merge them")
    counts = np.bincount(np.asarray(train_ids, np.int64), minlength=len(names))
    few = [f"{name!r} has {n} training row{'' if n == 1 else 's'}" for name, n in zip(names, counts.tolist())
           if n < FEW_ROWS]
    if few:
      self.warnings.append(f"{file_name}: {', '.join(few)}: fewer than {FEW_ROWS} rows to learn a class from; "
                           "check those labels, or add rows")

  def say(self) -> None:
    for line in self.warnings:
      print(f"warning: {line}", file=sys.stderr)

  def to_json(self) -> dict:
    return {"warnings": list(self.warnings), "dropped_rows": list(self.dropped)}

  @classmethod
  def from_json(cls, value: dict | None) -> "Report":
    value = value or {}
    return cls(list(value.get("warnings", [])), list(value.get("dropped_rows", [])))


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
