"""What a table's cells hold: a numeric cell as a finite number or a missing value (`number`), a column that is
numeric but for a few bad cells (`is_numeric`, `numeric_cells`: a typo such as `7O.2` or an `inf` named by row
and treated as missing), and a categorical cell as its category (`category`), one training never saw (`unseen`, `case_variant`)."""
import math
import sys

import numpy as np
import pandas as pd

NA = ["", "?", "NA", "N/A", "NaN", "nan", "null", "None"]  # a cell holding one of these is missing
NUMERIC_SHARE = 0.9  # a column whose non-missing cells are at least this share of numbers is numeric
_SHOWN = 5  # bad cells named per column on stderr


def number(value) -> float:
  """A numeric cell as a float, NaN when missing (None, NaN, or a marker such as "" or "NA"). ValueError for
  text that is no number ("8O", "80,5") and for a number that is not finite ("inf", "1e309")."""
  if value is None:
    return math.nan
  if isinstance(value, str):
    if value.strip() in NA:
      return math.nan
    value = value.strip()
  elif not isinstance(value, (int, float, np.integer, np.floating)):
    raise ValueError(f"{type(value).__name__} is not a number")
  value = float(value)
  if math.isinf(value):
    raise ValueError("not finite")
  return value


def numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
  """(float64 [N] values of a column's cells (`number`), NaN where missing or bad; the indices of the bad
  cells)."""
  if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
    values = column.to_numpy(np.float64)
    bad = np.flatnonzero(np.isinf(values))
  else:
    values, bad = np.empty(len(column)), []
    for i, cell in enumerate(column.to_numpy(object)):
      try:
        values[i] = number(cell)
      except ValueError:
        values[i] = math.nan
        bad.append(i)
    bad = np.asarray(bad, np.int64)
  values = values.copy()
  values[bad] = math.nan
  return values, bad


def why(cell) -> str:
  """What is wrong with a cell that `number` refused."""
  if isinstance(cell, (int, float, np.integer, np.floating)):
    return f"{cell}, not a finite number"
  try:
    float(cell)
  except (TypeError, ValueError):
    return f"{cell!r}, not a number"
  return f"{cell!r}, not a finite number"


def is_numeric(column: pd.Series) -> bool:
  """Whether at least NUMERIC_SHARE of the column's non-missing cells are finite numbers (`number`)."""
  values, bad = numbers(column)
  parsed = int(np.sum(~np.isnan(values)))
  return parsed > 0 and parsed >= NUMERIC_SHARE * (parsed + len(bad))


def numeric_cells(table: pd.DataFrame, numeric: list[str], name: str, missing: str, *,
                  warn: bool) -> pd.DataFrame:
  """`table` with its `numeric` columns as float64, each bad cell (`numbers`) a missing value, said on stderr
  (`warn`) with its file row (a CSV's header is row 1) and what becomes of it (data.missing)."""
  table = table.copy()
  first = 1 if name.lower().endswith((".jsonl", ".ndjson")) else 2
  for column in numeric:
    values, bad = numbers(table[column])
    if len(bad) and warn:
      cells = ", ".join(f"row {i + first}: {str(table[column].iloc[i])!r}" for i in bad[:_SHOWN])
      fate = ("data.missing=drop: the row is dropped" if missing == "drop" else
              "data.missing=impute: filled with the training mean")
      print(f"warning: {name}: column {column!r} is numeric but {len(bad)} of its {len(values)} cells "
            f"{'is' if len(bad) == 1 else 'are'} not a number ({cells}{', ...' if len(bad) > _SHOWN else ''}); "
            f"treated as missing ({fate}); fix {'it' if len(bad) == 1 else 'them'}, or name the column in "
            "--config.data.categorical_columns if it holds categories", file=sys.stderr)
    table[column] = values
  return table


def category(value):
  """A cell as its category string: numbers too (1, 1.0 and "1" are one category), None when missing."""
  if value is None or (isinstance(value, float) and np.isnan(value)):
    return None
  if isinstance(value, (float, np.floating)) and float(value).is_integer():
    value = int(value)  # an integer column with gaps is read as floats
  return str(value).strip()


def unseen(stats: dict, table: pd.DataFrame) -> list[dict[str, str]]:
  """Per row of `table`, {column: value} for each categorical cell of `stats` (tabular.fit's statistics) whose
  `category` training never saw (it encodes as all zeros, or -1); a missing cell is filled with a seen value,
  so never counted."""
  found = [{} for _ in range(len(table))]
  for s in stats["categorical"]:
    if s["column"] in table.columns:
      known = set(s["categories"])
      for i, cell in enumerate(table[s["column"]].astype(object)):
        value = category(cell)
        if value is not None and value not in known:
          found[i][s["column"]] = value
  return found


def case_variant(stats: dict, column: str, value: str) -> str | None:
  """The category of `column` that training saw and that differs from `value` only by case, if any."""
  spec = next((s for s in stats["categorical"] if s["column"] == column), {"categories": []})
  return next((c for c in spec["categories"] if c.casefold() == value.casefold()), None)
