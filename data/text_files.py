"""The user's own labelled texts (CSV, TSV or JSONL) as a TFDS array_record dataset of token ids.

Label names are the sorted distinct values of the label column. Without a split column, a seeded,
stratified validation and test part is held out of the rows; with one (values train/validation/test),
a missing validation or test part is held out of the train rows. `validation_fraction=0` holds out no
validation part: the prepared copy has train and test splits only. The prepared copy is keyed by the file's
content (SHA-256) and every option, so an unchanged file is read once, wherever it lies. When the file's
content changes, the copies prepared from its earlier contents are deleted unless a run still uses them
(builders.forget_earlier_copies): eval scores a run on the copy it trained on.

A row whose text or label is missing, null, NaN or empty (in JSON, or a cell holding `NaN`, `nan`, `null`,
`None` or nothing: splits.MISSING) is refused in one line naming the file and row, or with `bad_rows="drop"`
dropped and reported (splits.Report: a warning naming the first rows; all of them in the run's data.json).
Labels lose surrounding whitespace and, with `label_case="lower"`, their case; labels that differ only by case
and classes with a handful of training rows are warned about.
"""
import dataclasses
import pathlib

import jax
import numpy as np
import tensorflow_datasets as tfds

from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.data import builders, dataset, fields, file_rows, records, splits, text

_COLUMNS = ("text_column", "label_column", "split_column", "bad_rows", "label_case")  # read_table's arguments


def read_table(path, text_column: str, label_column: str, split_column: str = "", bad_rows: str = "error",
               label_case: str = "keep"):
  """(texts, labels, splits or None, the file rows dropped) from a .csv/.tsv (header row) or .jsonl file.

  A missing text or label (splits.missing) is a UserError naming the row, or (bad_rows="drop") skipped.
  Labels are class names as splits.label_name makes them (`label_case`: "keep" or "lower").
  """
  path = pathlib.Path(path)
  columns = {"text_column": text_column, "label_column": label_column}
  if split_column:
    columns["split_column"] = split_column
  rows = file_rows.rows(path, columns)
  texts, labels, split_names, dropped = [], [], [], []
  for line_num, values in rows:
    bad = [c for c, v in zip((text_column, label_column), values) if splits.missing(v)]
    if bad and bad_rows == "drop":
      dropped.append(line_num)
      continue
    if bad:
      raise UserError(f"{path.name} row {line_num}: missing or empty {bad[0]!r} (null, NaN, None or blank); fix "
                      "the row, or pass --config.data.bad_rows=drop to drop such rows")
    texts.append(values[0])
    labels.append(splits.label_name(values[1], label_case))
    if split_column:
      split_names.append(values[2].strip().lower())
      if split_names[-1] not in dataset.SPLITS:
        raise UserError(f"{path.name} row {line_num}: {split_column!r} is {values[2]!r}; "
                        f"use one of: {', '.join(dataset.SPLITS)}")
  if not texts:
    raise UserError(f"{path.name} has no data rows; pass --config.data.path=A_FILE_WITH_ROWS")
  return texts, labels, (split_names if split_column else None), dropped


def split_rows(labels: np.ndarray, split_names, validation_fraction: float, test_fraction: float, seed: int,
               where: str) -> dict[str, np.ndarray]:
  """Row indices per split: the split column's (`split_names`, one per row, or None), and what it lacks held
  out of its train rows (`splits.hold_out`; UserError naming `where` for an empty split). With
  `validation_fraction` 0 there is no "validation" entry: the column's validation rows, if any, train too."""
  given = {s: np.flatnonzero(np.asarray(split_names) == s) for s in dataset.SPLITS} if split_names else {}
  if validation_fraction == 0 and "validation" in given:
    given["train"] = np.sort(np.concatenate([given["train"], given.pop("validation")]))
  pool = given.pop("train") if split_names else np.arange(len(labels))
  given = {s: rows for s, rows in given.items() if len(rows)}  # the column's validation and test rows
  held = splits.hold_out(labels[pool], seed=seed, where=where, size=f"{len(labels)} rows", add="add rows",
                         validation=None if "validation" in given else validation_fraction,
                         test=None if "test" in given else test_fraction)
  out = {**given, **{s: pool[rows] for s, rows in held.items()}}
  return {s: out[s] for s in dataset.SPLITS if s in out}


class TextFile(builders.ArrayBuilder):
  DESCRIPTION = "Labelled texts from a user's file, as token ids"
  table = None  # read_table's answer, set by `load` before preparing so a bad file is refused first

  def features(self):
    # Label names come from the file, read after _info; they live in the metadata instead.
    return builders.ids_feature(self.builder_config.options["seq_len"]), tfds.features.Tensor(shape=(), dtype=np.int64)

  def _split_generators(self, dl_manager):
    options = dict(self.builder_config.options)
    file_name = pathlib.Path(self.builder_config.source).name
    label_column = options["label_column"]
    for k in (*_COLUMNS, "sha256"):
      options.pop(k)
    fractions = options.pop("validation_fraction"), options.pop("test_fraction")
    seed = options.pop("split_seed")
    texts, labels, split_names, dropped = self.table
    labeler = splits.label_encoder(labels)
    if len(labeler.names) < 2:
      raise UserError(f"{file_name}: column {label_column!r} has the single value {labeler.names[0]!r}; "
                      "a classifier needs at least 2 classes")
    ids = labeler.encode(labels)
    parts = split_rows(ids, split_names, *fractions, seed, file_name)
    encoder = text.fit_encoder((texts[i] for i in parts["train"]), options)
    self.info.metadata["text_encoder"] = encoder.to_json()
    self.info.metadata["label_names"] = labeler.to_json()
    report = splits.Report()
    report.drop(file_name, dropped, "a missing text or label")
    report.check_labels(file_name, labeler.names, ids[parts["train"]])
    self.info.metadata["report"] = report.to_json()
    warning = text.vocabulary_warning(
        encoder, [texts[i] for i in parts["train"]], [texts[i] for i in parts.get("validation", ())])
    if warning:
      self.info.metadata["warning"] = warning
    return {name: self._generate_examples(encoder.encode([texts[i] for i in idx]), ids[idx])
            for name, idx in parts.items()}


def source(cfg) -> pathlib.Path:
  given = fields.TextFile.read(cfg).path
  if not given:
    raise UserError("no input file; pass --config.data.path=FILE.csv (or .tsv, .jsonl)")
  path = pathlib.Path(paths.expand(given))
  if not path.is_file():
    raise UserError(f"{given} not found; pass --config.data.path=AN_EXISTING_FILE")
  return path


def options(cfg, sha256: str) -> dict:
  """Everything that shapes the prepared data: the file's content (its SHA-256) and every option."""
  columns = {k: v for k, v in dataclasses.asdict(fields.TextFile.read(cfg)).items() if k != "path"}
  return {**text.encoder_options(cfg), **columns, **dataclasses.asdict(fields.Labels.read(cfg)),
          **dataclasses.asdict(fields.Validation.read(cfg)),
          **dataclasses.asdict(fields.Test.read(cfg)), "sha256": sha256}


def load(cfg) -> dataset.Dataset:
  """`cfg` is `config.data` (data.fields.TextFile, Labels, Validation, Test and the text sections): the file
  at `path`, prepared once per content and options in data_dir. What preparing it found (warnings, dropped
  rows) is said on stderr at every load and kept in the dataset's `report`."""
  path = source(cfg)
  sha256 = records.file_sha256(path)
  opts = options(cfg, sha256)
  builder = TextFile(data_dir=dataset.data_dir(cfg),
                     config=builders.builder_config(opts, source=str(path), label=text.copy_label(opts)))
  fresh = not builder.is_prepared()
  if fresh and jax.process_index() == 0:
    builder.table = read_table(path, *(opts[k] for k in _COLUMNS))
  builder = dataset.prepare(builder)
  if fresh and jax.process_index() == 0:
    builders.forget_earlier_copies(builder.data_dir, path, sha256)
  ds = text.from_builder(builder)
  ds.source = {"path": str(path), "sha256": sha256}
  ds.report = dict(builder.info.metadata.get("report") or {})  # {}: prepared before reports were kept
  splits.Report.from_json(ds.report).say()
  return ds
