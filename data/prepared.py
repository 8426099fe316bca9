"""The prepared copies in a data directory: TFDS array_record folders (`<dataset>/<config>/<version>`, or
`<dataset>/<version>`) made once and reused by every run with the same data and options. Where the directory
is (`folder`), each copy's size, age, source file and the runs that use it (`copies`), and removing a copy
(`remove`). JAX- and TFDS-free: `flaxforge data list` answers at once.

A copy of a user's file holds `source.json` (builders.forget_earlier_copies writes it): the file it was made
from, its SHA-256 and the runs noted as using it (`note_run`); a run uses it while its data.json
records this copy as its `prepared_dir`.
"""
import dataclasses
import json
import os
import time

from etils import epath

from flaxforge.core import paths
from flaxforge.data import records

SOURCE = "source.json"  # in a copy of a user's file: the file it was made from, its SHA-256, the runs using it


def folder(configured: str = "") -> epath.Path:
  """The data directory: `configured` (config.data.data_dir), else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return epath.Path(paths.expand(configured or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"))


@dataclasses.dataclass
class Copy:
  path: epath.Path  # the copy's version folder
  size: int  # bytes on disk
  age_days: float  # since it was prepared, or a run last noted using it
  source: str  # the user's file it was made from; "" for a built-in dataset
  runs: list[str]  # the work directories whose data.json records this copy


def copies(data_dir: epath.Path) -> list[Copy]:
  """Every prepared copy in `data_dir`, by path."""
  found = sorted({p.parent for pattern in ("*/*/dataset_info.json", "*/*/*/dataset_info.json")
                  for p in epath.Path(data_dir).glob(pattern)}, key=str)
  return [_describe(copy) for copy in found]


def _describe(copy: epath.Path) -> Copy:
  files = [p for p in copy.iterdir() if p.is_file()]
  newest = max((p.stat().mtime for p in files), default=time.time())
  made_from = _source(copy)
  runs = [run for run in made_from.get("runs", []) if uses(run, copy)]
  return Copy(copy, sum(p.stat().length for p in files), max(time.time() - newest, 0.0) / 86400,
              made_from.get("path", ""), runs)


def _source(copy: epath.Path) -> dict:
  try:
    return json.loads((copy / SOURCE).read_text())
  except (OSError, ValueError):  # a built-in dataset's copy has none
    return {}


def uses(run, copy) -> bool:
  """Whether the run in `run` (a work directory) records `copy` as its data (data.json's prepared_dir)."""
  try:
    return json.loads((epath.Path(run) / records.RECORD_FILE).read_text())["prepared_dir"] == str(copy)
  except (OSError, ValueError, KeyError):  # the run was deleted, or its record is not this kind
    return False


def note_run(prepared, workdir) -> None:
  """Records that the run in `workdir` uses the prepared copy `prepared` (copies of a user's file only); the
  marker is written at every call, so its time is when a run last started on the copy (`flaxforge data list`)."""
  marker = epath.Path(prepared) / SOURCE
  if not marker.exists():
    return
  made_from = json.loads(marker.read_text())
  if str(workdir) not in made_from.setdefault("runs", []):
    made_from["runs"].append(str(workdir))
  marker.write_text(json.dumps(made_from))


def remove(copy: epath.Path) -> None:
  """Deletes the copy's version folder, then its config and dataset folders when nothing else is in them."""
  copy = epath.Path(copy)
  copy.rmtree()
  paths.remove_empty([copy.parent, copy.parent.parent])
