"""A table (CSV, TSV or JSONL) of numeric and categorical columns as a TFDS array_record dataset of float32
feature vectors, with the seed's preprocessing (section 3.2.1), every statistic fitted on the training split.

- Cleaning (`missing`): `drop` rows with a missing value, or `impute` the training mean (numeric columns)
  or most frequent value (categorical columns), with scikit-learn's SimpleImputer.
- A column is numeric when at least 90% of its non-missing cells are finite numbers (data/table_cells.py); its
  other cells (a typo such as `7O.2`, `inf`) are named by row on stderr and are missing values. At predict
  (`transform` with `names`) such a cell is an error for its row, never a filled value.
- Numeric columns (`normalize`): `minmax` to [0, 1], `minmax_symmetric` to [-1, 1] (MinMaxScaler),
  `standardize` (StandardScaler) or `none`.
- Categorical columns (`categorical_encoding`): `one_hot` (unseen values encode as all zeros) or `label`
  (the category's index, -1 when unseen); table_cells.unseen names them (a case variant too: `paris` when
  training saw `Paris`).

The fitted statistics are one JSON object (`fit` returns it, `transform` applies it): the trainer stores it
beside the checkpoint as `assets/table_transform.json`, and the prepared training rows are themselves
`transform(statistics, rows)`, so predict reproduces the training inputs from the JSON alone.
"""
import dataclasses
import pathlib

import jax
import numpy as np
import pandas as pd
import tensorflow_datasets as tfds
from sklearn import impute, preprocessing

from flaxforge.data import builders, dataset, fields, records, splits, table_cells
from flaxforge.core.errors import UserError

_MINMAX = {"minmax": (0.0, 1.0), "minmax_symmetric": (-1.0, 1.0)}  # data.normalize: MinMaxScaler's range


def read(path) -> pd.DataFrame:
  """The table at `path` (.csv, .tsv: a header row; .jsonl: one object per line); UserError if unreadable."""
  path = pathlib.Path(path)
  suffix = path.suffix.lower()
  try:
    if suffix in (".csv", ".tsv"):
      table = pd.read_csv(path, sep="," if suffix == ".csv" else "\t", na_values=table_cells.NA,
                          keep_default_na=False)
    elif suffix in (".jsonl", ".ndjson"):
      table = pd.read_json(path, lines=True)
    else:
      raise UserError(f"{path.name}: unknown file type {suffix!r}; use .csv, .tsv or .jsonl")
  except (ValueError, pd.errors.ParserError) as e:
    raise UserError(f"{path.name}: unreadable table ({str(e).splitlines()[0]})") from None
  if table.empty:
    raise UserError(f"{path.name} has no data rows; pass --config.data.path=A_FILE_WITH_ROWS")
  return table


def _columns(value) -> list[str]:
  return [c.strip() for c in value.split(",") if c.strip()] if isinstance(value, str) else list(value)


def columns(table: pd.DataFrame, opts: dict, name: str) -> tuple[list[str], list[str]]:
  """(numeric, categorical) feature columns: the configured ones, else every column but the label, split
  by type (non-numeric columns, and those named in categorical_columns, are categorical)."""
  label = opts["label_column"]
  features = _columns(opts["feature_columns"]) or [c for c in table.columns if c != label]
  categorical = set(_columns(opts["categorical_columns"]))
  for flag, wanted in (("label_column", [label]), ("feature_columns", features),
                       ("categorical_columns", sorted(categorical))):
    missing = [c for c in wanted if c not in table.columns]
    if missing:
      raise UserError(f"column {missing[0]!r} not found in {name}; columns are: {', '.join(map(str, table.columns))}; "
                      f"pass --config.data.{flag}=...")
  numeric = [c for c in features if c not in categorical and table_cells.is_numeric(table[c])]
  return numeric, [c for c in features if c not in numeric]


def _categories(table: pd.DataFrame, cols: list[str]) -> np.ndarray:
  """The categorical cells as an object array of strings (`table_cells.category`), missing as None."""
  values = table[cols].astype(object).to_numpy()
  return np.vectorize(table_cells.category, otypes=[object])(values) if values.size else values


def fit(train: pd.DataFrame, numeric: list[str], categorical: list[str], *, normalize: str,
        categorical_encoding: str) -> dict:
  """The JSON statistics of the preprocessing, fitted on the training rows with scikit-learn (missing values
  are filled with the training mean or most frequent value; `prepare_rows` has dropped them if asked to)."""
  stats = {"numeric": [], "categorical": [], "categorical_encoding": categorical_encoding}
  if numeric:
    values = train[numeric].to_numpy(np.float64)
    fills = impute.SimpleImputer(strategy="mean", keep_empty_features=True).fit(values).statistics_
    values = np.where(np.isnan(values), fills, values)
    if normalize in _MINMAX:
      scaler = preprocessing.MinMaxScaler(feature_range=_MINMAX[normalize]).fit(values)
      scale, offset = scaler.scale_, scaler.min_  # x * scale_ + min_
    elif normalize == "standardize":
      scaler = preprocessing.StandardScaler().fit(values)
      scale, offset = 1 / scaler.scale_, -scaler.mean_ / scaler.scale_
    else:
      scale, offset = np.ones(len(numeric)), np.zeros(len(numeric))
    stats["numeric"] = [{"column": str(c), "fill": float(f), "scale": float(s), "offset": float(o)}
                        for c, f, s, o in zip(numeric, fills, scale, offset)]
  if categorical:
    values = _categories(train, categorical)
    imputer = impute.SimpleImputer(strategy="most_frequent", missing_values=None).fit(values)
    values = imputer.transform(values)
    encoder = preprocessing.OrdinalEncoder().fit(values)
    stats["categorical"] = [{"column": str(c), "fill": str(f), "categories": [str(v) for v in cats]}
                            for c, f, cats in zip(categorical, imputer.statistics_, encoder.categories_)]
  return stats


def feature_names(stats: dict) -> list[str]:
  names = [n["column"] for n in stats["numeric"]]
  for c in stats["categorical"]:
    names += ([f"{c['column']}={v}" for v in c["categories"]] if stats["categorical_encoding"] == "one_hot"
              else [c["column"]])
  return names


def transform(stats: dict, table: pd.DataFrame, names: list[str] | None = None) -> np.ndarray:
  """Rows of `table` as float32 [N, len(feature_names(stats))], from the JSON statistics alone: missing
  values filled, numeric columns scaled, categorical columns encoded. UserError if a column is absent, or
  naming the row (`names[i]`, default "input i") whose numeric cell is no number, not finite, or too large
  for float32 once scaled."""
  absent = [s["column"] for s in stats["numeric"] + stats["categorical"] if s["column"] not in table.columns]
  if absent:
    raise UserError(f"column {absent[0]!r} of the training table is missing; add it to the rows")
  names = names or [f"input {i}" for i in range(len(table))]
  fix = "fix the value (an empty cell is filled as in training)"
  parts = []
  for s in stats["numeric"]:
    column = table[s["column"]]
    values, bad = table_cells.numbers(column)
    if len(bad):
      raise UserError(f"{names[bad[0]]}: {s['column']!r} is {table_cells.why(column.iloc[bad[0]])}; {fix}")
    scaled = np.where(np.isnan(values), s["fill"], values) * s["scale"] + s["offset"]
    over = np.flatnonzero(np.abs(scaled) > np.finfo(np.float32).max)
    if len(over):
      raise UserError(f"{names[over[0]]}: {s['column']!r} is {values[over[0]]:g}, too large (beyond float32 once "
                      f"scaled); {fix}")
    parts.append(scaled[:, None])
  for s in stats["categorical"]:
    values = _categories(table, [s["column"]])[:, 0]
    values = np.where(values == None, s["fill"], values)  # pylint: disable=singleton-comparison
    index = {v: i for i, v in enumerate(s["categories"])}
    codes = np.array([index.get(v, -1) for v in values])
    if stats["categorical_encoding"] == "one_hot":
      parts.append((codes[:, None] == np.arange(len(s["categories"]))).astype(np.float64))
    else:
      parts.append(codes[:, None].astype(np.float64))
  return np.concatenate(parts, axis=1).astype(np.float32) if parts else np.zeros((len(table), 0), np.float32)


def prepare_rows(opts: dict, report: splits.Report | None = None) -> tuple[pd.DataFrame, np.ndarray, dict, dict]:
  """(the kept rows, their targets, row indices per split, the fitted statistics JSON with label names).

  A row whose label is missing (splits.missing: NaN, null, None, an empty cell), or with `missing="drop"`
  any of whose features is, is dropped; `report` (if given) records those rows (numbered as the file's: a
  CSV's header is row 1) and warns about the class names (splits.Report.check_labels); with a report, the
  numeric columns' bad cells are said on stderr too (table_cells.numeric_cells)."""
  path = pathlib.Path(opts["path"])
  table = read(path)
  numeric, categorical = columns(table, opts, path.name)
  table = table_cells.numeric_cells(table, numeric, path.name, opts["missing"], warn=report is not None)
  label = opts["label_column"]
  names = np.array([splits.label_name(v, opts["label_case"]) for v in table[label]], object)
  keep = names != None  # pylint: disable=singleton-comparison
  if opts["missing"] == "drop":
    keep &= table[numeric + categorical].notna().all(axis=1).to_numpy()
  if report is not None:
    first = 1 if path.suffix.lower() in (".jsonl", ".ndjson") else 2
    report.drop(path.name, np.flatnonzero(~keep) + first,
                "a missing label or value" if opts["missing"] == "drop" else "a missing label")
  table, names = table[keep].reset_index(drop=True), names[keep]
  if opts["task"] == "classification":
    labeler = splits.label_encoder(names)
    if len(labeler.names) < 2:
      raise UserError(f"{path.name}: column {label!r} has fewer than 2 values; a classifier needs at least 2 classes")
    targets, strata = labeler.encode(names), None
  else:
    targets = pd.to_numeric(table[label], errors="coerce").to_numpy(np.float32)
    if np.isnan(targets).any():
      raise UserError(f"{path.name}: column {label!r} holds non-numbers; regression needs numeric targets")
    labeler, strata = None, np.zeros(len(targets), np.int64)
  parts = splits.hold_out(targets if strata is None else strata, validation=opts["validation_fraction"],
                          test=opts["test_fraction"], seed=opts["split_seed"], where=path.name,
                          size=f"{len(table)} rows kept", add="add rows")
  if labeler and report is not None:
    report.check_labels(path.name, labeler.names, targets[parts["train"]])
  stats = fit(table.iloc[parts["train"]], numeric, categorical, normalize=opts["normalize"],
              categorical_encoding=opts["categorical_encoding"])
  stats["label"] = {"column": label, "task": opts["task"], "names": list(labeler.names) if labeler else None}
  return table, targets, parts, stats


class Table(builders.ArrayBuilder):
  DESCRIPTION = "Rows of a user's table as preprocessed features"

  def features(self):
    stats, task = self.builder_config.options["statistics"], self.builder_config.options["task"]
    return (tfds.features.Tensor(shape=(len(feature_names(stats)),), dtype=np.float32),
            tfds.features.Tensor(shape=(), dtype=np.int64 if task == "classification" else np.float32))

  def _split_generators(self, dl_manager):
    table, targets, parts, _ = prepare_rows(self.builder_config.options)
    inputs = transform(self.builder_config.options["statistics"], table)
    return {name: self._generate_examples(inputs[idx], targets[idx]) for name, idx in parts.items()}


def options(cfg) -> dict:
  """What shapes the prepared copy: the file's content (a touched file is reused) and every option."""
  table = fields.Table.read(cfg)
  path = builders.existing_path(table.path, "path")
  return {**dataclasses.asdict(table), **dataclasses.asdict(fields.Labels.read(cfg)),
          **dataclasses.asdict(fields.Validation.read(cfg)),
          **dataclasses.asdict(fields.Test.read(cfg)), "path": str(path), "sha256": records.file_sha256(path)}


def load(cfg) -> dataset.Dataset:
  """`cfg` is `config.data` (data.fields.Table, Labels, Validation, Test). The table is read and the
  statistics fitted on each load (fast for tables), the rows dropped and label warnings said on stderr and
  kept in the dataset's `report`; the prepared rows are written once per file content and options, and the
  copies of the file's earlier contents are deleted."""
  opts = options(cfg)
  report = splits.Report()
  _, _, _, stats = prepare_rows(opts, report)
  report.say()
  builder = Table(data_dir=dataset.data_dir(cfg),
                  config=builders.builder_config({**opts, "statistics": stats}, source=opts["path"]))
  fresh = not builder.is_prepared()
  builder = dataset.prepare(builder)
  if fresh and jax.process_index() == 0:
    builders.forget_earlier_copies(builder.data_dir, opts["path"], opts["sha256"])
  names = stats["label"]["names"]
  info = {"task": opts["task"], "input_shape": [len(feature_names(stats))], "feature_names": feature_names(stats)}
  info.update({"num_classes": len(names), "label_names": names} if names else {"num_classes": 1})
  return dataset.Dataset(splits=dataset.sources(builder, dataset.SPLITS), info=info,
                         assets={"table_transform": stats, **({"labels": names} if names else {})},
                         report=report.to_json())
