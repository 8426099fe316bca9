"""A run's data, recorded and reopened: what was trained on (a content fingerprint) and where it lies.

Training records `describe(name, dataset)` in the work directory. Eval and predict reopen exactly that
prepared copy with `open_recorded` (never re-running a builder, which would re-fit the vocabulary and labels
on whatever the user's file holds now) and check it against the record.
"""
import functools
import hashlib
import json
import os

import tensorflow_datasets as tfds
from etils import epath

from flaxforge import data as data_lib
from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.data import dataset as dataset_lib

RECORD_FILE = "data.json"  # in a work directory: the record of the data its run trained on

# Compared between runs: a difference in any of these means other data (paths may change, contents not).
IDENTITY = ("source_sha256", "splits", "shards", "vocabulary", "labels")


def digest(value) -> str:
  return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def file_sha256(path) -> str:
  """The hex SHA-256 of the file's bytes. Asked again in the same process about an unchanged local file
  (same inode, size and modification time in ns) it answers from memory: a resume checks the user's file
  before preparing it and the loader fingerprints it again, seconds each for a multi-GB file."""
  path = epath.Path(path)
  try:
    stat = os.stat(path)
  except OSError:  # not a local file (gs://...): read it
    return _sha256(os.fspath(path))
  return _sha256_unchanged(os.fspath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_unchanged(path: str, *identity) -> str:
  del identity  # only the cache's key: a rewritten file is read again
  return _sha256(path)


def _sha256(path: str) -> str:
  h = hashlib.sha256()
  with epath.Path(path).open("rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def describe(name: str, ds: dataset_lib.Dataset) -> dict:
  """The JSON record of `ds`: its identity fields (IDENTITY) and where it lies (absolute paths)."""
  encoder = ds.assets.get("text_encoder") or ds.assets.get("tokenizer")  # a classifier's, or a language model's
  return {
      "loader": name,
      "prepared_dir": ds.prepared_dir,
      "source": ds.source.get("path", ""),
      "source_sha256": ds.source.get("sha256", ""),
      "splits": {split: len(rows) for split, rows in ds.splits.items()},
      "shards": _shards(ds.prepared_dir),
      "vocabulary": digest(encoder) if encoder else "",
      "labels": ds.info.get("label_names", []),
  }


def differences(old: dict, new: dict) -> list[str]:
  """'what: old -> new' for each identity field that differs (empty when the data is the same)."""
  out = []
  for key in IDENTITY:
    a, b = old.get(key), new.get(key)
    if key in ("source_sha256", "vocabulary") and not a:  # a record from before these were taken for this data
      continue
    if a != b:
      if key == "source_sha256":
        out.append(f"the content of {new.get('source') or old.get('source')} (sha256 {str(a)[:12]} -> {str(b)[:12]})")
      elif key == "vocabulary":
        out.append("the vocabulary or tokenizer")
      elif key == "shards":
        out.append("the prepared files")
      else:
        out.append(f"{key} {_short(a)} -> {_short(b)}")
  return out


def open_recorded(record: dict, cfg, info: dict, assets: dict, data_dir: str = "") -> dataset_lib.Dataset:
  """The splits a run trained and tested on, with the run's own `info` and `assets` (from its work directory).

  A prepared copy is opened from its recorded directory, or from `data_dir` (a folder that holds the same
  `loader/config/version` tree, where the copy was moved). Data made in memory, or a copy that is gone, is
  rebuilt from `cfg` and used only if it matches the record. UserError says what moved or changed and
  which flag points at it.
  """
  prepared = record.get("prepared_dir", "")
  directory = epath.Path(prepared)
  if data_dir:
    directory = epath.Path(paths.expand(data_dir)).joinpath(*directory.parts[-3:])
  if not prepared or not (data_dir or (directory / "dataset_info.json").exists()):
    ds = data_lib.load(cfg)
    changed = differences(record, describe(record.get("loader", ""), ds))
    if not changed:
      return ds
    if not prepared:
      raise UserError(f"the data differs from what this run was trained on ({'; '.join(changed)}); restore it "
                      "to score this run")
  if not (directory / "dataset_info.json").exists():
    raise UserError(f"the prepared data this run was trained on is not in {directory} (moved or deleted) and "
                    f"its source has changed; pass --data_dir=FOLDER that holds {'/'.join(directory.parts[-3:])}")
  builder = tfds.builder_from_directory(directory)
  ds = dataset_lib.Dataset(splits=dataset_lib.sources(builder, list(record["splits"])), info=info,
                           assets=assets, prepared_dir=str(directory))
  changed = [c for c in differences(record, {**describe(record["loader"], ds), "source_sha256":
                                             record.get("source_sha256")}) if "vocabulary" not in c]
  metadata = builder.info.metadata or {}
  if "text_encoder" in metadata and digest(dict(metadata["text_encoder"])) != record.get("vocabulary"):
    changed.append("the vocabulary or tokenizer")
  if "label_names" in metadata and list(metadata["label_names"]) != record.get("labels"):
    changed.append(f"labels {_short(record.get('labels'))} -> {_short(list(metadata['label_names']))}")
  if changed:
    raise UserError(f"the prepared data in {directory} is not what this run was trained on "
                    f"({'; '.join(changed)}); pass --data_dir=FOLDER holding the run's own copy")
  return ds


def _shards(prepared_dir: str) -> str:
  """A digest of the prepared files' names and sizes (their contents follow from the keyed options)."""
  if not prepared_dir:
    return ""
  files = sorted((p.name, p.stat().length) for p in epath.Path(prepared_dir).iterdir()
                 if ".array_record" in p.name or ".tfrecord" in p.name)
  return digest(files)


def _short(value) -> str:
  text = json.dumps(value)
  return text if len(text) <= 80 else text[:77] + "..."
