"""A run's data record: what was trained on (content fingerprints) and where it lies.

Training records `describe(name, dataset)` in the work directory; a resume compares the data with it
(`differences`), and eval and predict reopen exactly that prepared copy (data/reopen.py).
"""
import functools
import hashlib
import json
import os

from etils import epath

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


def describe(name: str, ds) -> dict:
  """The JSON record of `ds` (a data.dataset.Dataset that loader `name` made): its identity fields (IDENTITY),
  where it lies (absolute paths), what preparing it found (`warnings`, `dropped_rows`: data/splits.py); and,
  when the text encoder chose its tokenizer (data/text.py), why."""
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
      "warnings": list(ds.report.get("warnings", [])),
      "dropped_rows": list(ds.report.get("dropped_rows", [])),
      **({"tokenizer": encoder["chosen"]} if encoder and encoder.get("chosen") else {}),
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
        out.append(f"{key} {short(a)} -> {short(b)}")
  return out


def _shards(prepared_dir: str) -> str:
  """A digest of the prepared files' names and sizes (their contents follow from the keyed options)."""
  if not prepared_dir:
    return ""
  files = sorted((p.name, p.stat().length) for p in epath.Path(prepared_dir).iterdir()
                 if ".array_record" in p.name or ".tfrecord" in p.name)
  return digest(files)


def short(value) -> str:
  text = json.dumps(value)
  return text if len(text) <= 80 else text[:77] + "..."
