"""The user's own labelled texts (CSV, TSV or JSONL) as a TFDS array_record dataset of token ids.

Label names are the sorted distinct values of the label column. Without a split column, a seeded,
stratified validation and test part is held out of the rows; with one (values train/validation/test),
a missing validation or test part is held out of the train rows. `validation_fraction=0` holds out no
validation part: the prepared copy has train and test splits only. The prepared copy is keyed by the file's
content (SHA-256) and every option, so an unchanged file is read once, wherever it lies. When the file's
content changes, the copies prepared from its earlier contents are deleted unless a run still uses them
(keyed.forget_earlier_copies): eval scores a run on the copy it trained on.

A row whose text or label is missing, null, NaN or empty is refused in one line naming the file and row,
or with `bad_rows="drop"` dropped and counted (`dropped_rows` in the run's info).
"""
import csv
import io
import json
import math
import pathlib
import re
import sys

import jax
import numpy as np
import tensorflow_datasets as tfds

from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.data import dataset, keyed, newsgroups, records, text

SPLIT_VALUES = ("train", "validation", "test")
_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_JSONL = (".jsonl", ".ndjson")
TABLE_SUFFIXES = (*_DELIMITERS, *_JSONL)  # the files read by column; any other is plain text
_DEFAULTS = {"text_column": "text", "label_column": "label", "split_column": "",
             "validation_fraction": 0.1, "test_fraction": 0.1, "split_seed": 0, "bad_rows": "error"}
_BAD_ROWS = ("error", "drop")
_COLUMNS = ("text_column", "label_column", "split_column", "bad_rows")  # read_table's arguments, in order


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


def _csv_rows(name: str, content: str, delimiter: str, columns: dict, fix: str = ""):
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


def _jsonl_rows(name: str, content: str, columns: dict, fix: str = ""):
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


def read_table(path, text_column: str, label_column: str, split_column: str = "", bad_rows: str = "error"):
  """(texts, labels, splits or None, dropped row count) from a .csv/.tsv (header row) or .jsonl file.

  A missing, null, NaN or empty text or label is a UserError naming the row, or (bad_rows="drop") skipped.
  """
  if bad_rows not in _BAD_ROWS:
    raise UserError(f"data.bad_rows is {bad_rows!r}; use one of: {', '.join(_BAD_ROWS)}")
  path = pathlib.Path(path)
  suffix = path.suffix.lower()
  if suffix not in _DELIMITERS and suffix not in _JSONL:
    raise UserError(f"{path.name}: unknown file type {suffix!r}; use .csv, .tsv or .jsonl")
  columns = {"text_column": text_column, "label_column": label_column}
  if split_column:
    columns["split_column"] = split_column
  content = _decode(path)
  rows = (_jsonl_rows(path.name, content, columns) if suffix in _JSONL
          else _csv_rows(path.name, content, _DELIMITERS[suffix], columns))
  texts, labels, splits, dropped = [], [], [], 0
  for line_num, values in rows:
    bad = [c for c, v in zip((text_column, label_column), values) if v is None or not v.strip()]
    if bad and bad_rows == "drop":
      dropped += 1
      continue
    if bad:
      raise UserError(f"{path.name} row {line_num}: missing or empty {bad[0]!r} (null, NaN or blank); fix the "
                      "row, or pass --config.data.bad_rows=drop to drop and count such rows")
    texts.append(values[0])
    labels.append(values[1].strip())
    if split_column:
      splits.append(values[2].strip().lower())
      if splits[-1] not in SPLIT_VALUES:
        raise UserError(f"{path.name} row {line_num}: {split_column!r} is {values[2]!r}; "
                        f"use one of: {', '.join(SPLIT_VALUES)}")
  if not texts:
    raise UserError(f"{path.name} has no data rows; pass --config.data.path=A_FILE_WITH_ROWS")
  return texts, labels, (splits if split_column else None), dropped


def read_texts(path, text_column: str, fix: str = "") -> list[str]:
  """The `text_column` of each row of a .csv/.tsv (header row) or .jsonl file, as predict reads its input; a
  missing, null or NaN cell is "" (an empty result, keeping the rows' places). UserError (ending in `fix`, if
  given) for a missing column or an unreadable row."""
  path = pathlib.Path(path)
  content = _decode(path)
  columns = {"text_column": text_column}
  rows = (_jsonl_rows(path.name, content, columns, fix) if path.suffix.lower() in _JSONL
          else _csv_rows(path.name, content, _DELIMITERS[path.suffix.lower()], columns, fix))
  return [values[0] or "" for _, values in rows]


def split_rows(labels: np.ndarray, splits, validation_fraction: float, test_fraction: float,
               seed: int) -> dict[str, np.ndarray]:
  """Row indices per split: the split column's, and what it lacks held out of its train rows. With
  `validation_fraction` 0 there is no "validation" entry: the column's validation rows, if any, train too."""
  given = {s: np.flatnonzero(np.asarray(splits) == s) for s in SPLIT_VALUES} if splits else {}
  if validation_fraction == 0 and "validation" in given:
    given["train"] = np.sort(np.concatenate([given["train"], given.pop("validation")]))
  pool = given.get("train", np.arange(len(labels)))
  wanted = [s for s in ("test", "validation") if not len(given.get(s, ()))]  # test first: a refit keeps it
  fractions = {"validation": validation_fraction, "test": test_fraction}
  *held, rest = text.holdout(labels[pool], [fractions[s] for s in wanted], seed)
  out = {**given, **{s: pool[i] for s, i in zip(wanted, held)}, "train": pool[rest]}
  return text.without_validation({s: out[s] for s in SPLIT_VALUES}, validation_fraction)


class TextFile(dataset.PlainLog, tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")
  table = None  # read_table's answer, set by `load` before preparing so a bad file is refused first

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="Labelled texts from a user's file, as token ids; options: " + self.builder_config.description,
        # Label names come from the file, read after _info; they live in the metadata instead.
        features=newsgroups.encoded_features(self.builder_config.options["seq_len"],
                                             tfds.features.Tensor(shape=(), dtype=np.int64)),
        supervised_keys=("inputs", "label"),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    options = dict(self.builder_config.options)
    path = self.builder_config.source
    label_column = options["label_column"]
    for k in (*_COLUMNS, "sha256"):
      options.pop(k)
    fractions = options.pop("validation_fraction"), options.pop("test_fraction")
    seed = options.pop("split_seed")
    texts, labels, splits, dropped = self.table
    labeler = text.label_encoder(labels)
    if len(labeler.names) < 2:
      raise UserError(f"{pathlib.Path(path).name}: column {label_column!r} has the single value {labeler.names[0]!r}; "
                      "a classifier needs at least 2 classes")
    ids = labeler.encode(labels)
    parts = split_rows(ids, splits, *fractions, seed)
    text.refuse_empty(parts, pathlib.Path(path).name, f"{len(texts)} rows", "add rows")
    encoder = text.fit_encoder((texts[i] for i in parts["train"]), options)
    self.info.metadata["text_encoder"] = encoder.to_json()
    self.info.metadata["label_names"] = labeler.to_json()
    self.info.metadata["dropped_rows"] = dropped
    warning = text.vocabulary_warning(
        encoder, [texts[i] for i in parts["train"]], [texts[i] for i in parts.get("validation", ())])
    if warning:
      self.info.metadata["warning"] = warning
    return {name: self._generate_examples(encoder.encode([texts[i] for i in idx]), ids[idx])
            for name, idx in parts.items()}

  def _generate_examples(self, inputs, labels):
    for i, (row, label) in enumerate(zip(inputs, labels)):
      yield i, {"inputs": row, "label": int(label)}


def source(cfg) -> pathlib.Path:
  if not cfg.get("path", ""):
    raise UserError("no input file; pass --config.data.path=FILE.csv (or .tsv, .jsonl)")
  path = pathlib.Path(paths.expand(cfg.get("path")))
  if not path.is_file():
    raise UserError(f"{cfg.get('path')} not found; pass --config.data.path=AN_EXISTING_FILE")
  return path


def options(cfg, sha256: str) -> dict:
  """Everything that shapes the prepared data: the file's content (its SHA-256) and every option."""
  return {**text.encoder_options(cfg), **{k: cfg.get(k, v) for k, v in _DEFAULTS.items()}, "sha256": sha256}


def load(cfg) -> dataset.Dataset:
  """`cfg` is `config.data`: path, text_column ('text'), label_column ('label'), split_column ('' = none),
  validation_fraction (0.1; 0 = no validation split), test_fraction (0.1), split_seed (0), bad_rows ('error'
  or 'drop'), data_dir and the text options."""
  path = source(cfg)
  sha256 = records.file_sha256(path)
  stem = re.sub(r"[^a-z0-9]+", "_", path.stem.lower())[:24]
  config = newsgroups.builder_config(options(cfg, sha256), prefix=f"{stem}_", source=str(path))
  builder = TextFile(data_dir=dataset.data_dir(cfg.get("data_dir", "")), config=config)
  fresh = not builder.is_prepared()
  if fresh and jax.process_index() == 0:
    builder.table = read_table(path, *(config.options[k] for k in _COLUMNS))
  builder = dataset.prepare(builder)
  if fresh and jax.process_index() == 0:
    keyed.forget_earlier_copies(builder.data_dir, path, sha256)
  ds = newsgroups.from_builder(builder)
  ds.source = {"path": str(path), "sha256": sha256}
  ds.info["dropped_rows"] = int(builder.info.metadata.get("dropped_rows", 0))
  return ds
