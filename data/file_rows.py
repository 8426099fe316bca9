"""The rows of a user's CSV, TSV (a header row) or JSONL file, column by column: what training reads a text
file with (text_files.read_table) and predict its --input table (`read_texts`). A cell's value is its text; a
JSON null or NaN is None. JAX- and TFDS-free, so predict reads and checks its input before loading a model.
"""
import csv
import io
import json
import math
import pathlib
import sys

from flaxforge.core.errors import UserError
from flaxforge.data import splits

_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_JSONL = (".jsonl", ".ndjson")
TABLE_SUFFIXES = (*_DELIMITERS, *_JSONL)  # the files read by column; any other is plain text


def _decode(path: pathlib.Path) -> str:
  raw = path.read_bytes()
  if not raw.strip():
    raise UserError(f"{path.name} is empty; pass --config.data.path=A_FILE_WITH_A_HEADER_AND_ROWS")
  try:
    return raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    row = raw[:e.start].count(b"\n") + 1
    raise UserError(f"{path.name} row {row}: not UTF-8 (byte {raw[e.start]:#x}); save the file as UTF-8") from None


def _missing(name: str, what: str, column: str, flag: str, present, fix: str = "") -> UserError:
  return UserError(f"{what} {column!r} not found in {name}; {what}s are: {', '.join(present)}; "
                   f"{fix or f'pass --config.data.{flag}=...'}")


def csv_rows(name: str, content: str, delimiter: str, columns: dict, fix: str = ""):
  csv.field_size_limit(sys.maxsize)  # Python's 128 KiB default is not a property of the data
  reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)
  try:
    header = next(reader)
    for flag, column in columns.items():
      if column not in header:
        raise _missing(name, "column", column, flag, header, fix)
    where = [header.index(c) for c in columns.values()]
    for row in reader:
      if not row:
        continue  # blank line
      if len(row) != len(header):
        raise UserError(f"{name} row {reader.line_num}: expected {len(header)} columns, found {len(row)}")
      yield reader.line_num, [row[i] for i in where]
  except csv.Error as e:
    raise UserError(f"{name} row {reader.line_num}: unreadable CSV ({e})") from None


def jsonl_rows(name: str, content: str, columns: dict, fix: str = ""):
  for line_num, line in enumerate(content.split("\n"), 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise UserError(f"{name} row {line_num}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict):
      raise UserError(f"{name} row {line_num}: expected a JSON object, found {type(record).__name__}")
    for flag, column in columns.items():
      if column not in record:
        raise UserError(f"{name} row {line_num}: field {column!r} not found; fields are: "
                        f"{', '.join(record)}; {fix or f'pass --config.data.{flag}=...'}")
    yield line_num, [_cell(record[c]) for c in columns.values()]


def _cell(value) -> str | None:
  """A JSON value as text; None for null and NaN (a missing value, never a class or text named "null")."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return None
  return value if isinstance(value, str) else json.dumps(value)


def rows(path: pathlib.Path, columns: dict, fix: str = ""):
  """(file row number, [the cell of each of `columns`' values]) of each data row of a .csv/.tsv/.jsonl file;
  `columns` maps the config field naming a column to the column ("text_column": "text"). UserError (ending in
  `fix`, if given) for an unknown file type, a missing column or an unreadable row."""
  suffix = path.suffix.lower()
  if suffix not in _DELIMITERS and suffix not in _JSONL:
    raise UserError(f"{path.name}: unknown file type {suffix!r}; use .csv, .tsv or .jsonl")
  content = _decode(path)
  return (jsonl_rows(path.name, content, columns, fix) if suffix in _JSONL
          else csv_rows(path.name, content, _DELIMITERS[suffix], columns, fix))


def read_texts(path, text_column: str, fix: str = "") -> list[str]:
  """The `text_column` of each row of a .csv/.tsv (header row) or .jsonl file, as predict reads its input; a
  missing cell (splits.missing) is "", keeping the rows' places. UserError (ending in `fix`, if given) for a
  missing column or an unreadable row."""
  found = rows(pathlib.Path(path), {"text_column": text_column}, fix)
  return ["" if splits.missing(values[0]) else values[0] for _, values in found]
