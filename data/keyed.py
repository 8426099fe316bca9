"""Builder configs named by everything that shapes a prepared dataset (options, the input files' identity),
so a changed option or file prepares a new copy and an unchanged one is read from disk at once."""
import hashlib
import json
import pathlib
import re

from etils import epath

from flaxforge.data import newsgroups, records
from flaxforge.core import paths
from flaxforge.core.errors import UserError

_SOURCE = "source.json"  # in each prepared copy: the file it was made from, its SHA-256, the runs using it


def builder_config(options: dict, source: str = "") -> newsgroups.OptionsConfig:
  """A config named `<source stem>_<digest of options>`; `options` must be JSON-serialisable."""
  digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
  stem = re.sub(r"[^a-z0-9]+", "_", pathlib.Path(source).stem.lower())[:24] if source else ""
  name = f"{stem}_{digest}" if stem else f"o_{digest}"
  return newsgroups.OptionsConfig(name=name, description=json.dumps(options, sort_keys=True), options=options)


def existing_path(value: str, flag: str, what: str = "file") -> pathlib.Path:
  """`value` as an absolute path that exists, else a UserError naming --config.data.<flag>."""
  if not value:
    raise UserError(f"no input {what}; pass --config.data.{flag}=PATH")
  path = pathlib.Path(value).expanduser().resolve()
  if not path.exists():
    raise UserError(f"{value} not found; pass --config.data.{flag}=AN_EXISTING_{what.upper()}")
  return path


def identity(files) -> list:
  """(name, size, mtime_ns) of each file: a changed file changes the prepared copy's name."""
  return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def examples(inputs, labels):
  """A builder's `_generate_examples` for rows already computed: (index, {"inputs", "label"}) pairs."""
  for i, (row, label) in enumerate(zip(inputs, labels)):
    yield i, {"inputs": row, "label": label}


def forget_earlier_copies(prepared, path, sha256: str):
  """Marks `prepared` as made from `path` and deletes the copies made from that path's earlier contents,
  except those a run still trains or is evaluated on (see `note_run`)."""
  prepared = epath.Path(prepared)
  (prepared / _SOURCE).write_text(json.dumps({"path": str(path), "sha256": sha256, "runs": []}))
  for marker in prepared.parent.parent.glob(f"*/*/{_SOURCE}"):
    made_from = json.loads(marker.read_text())
    if made_from["path"] == str(path) and made_from["sha256"] != sha256 and not _in_use(marker.parent, made_from):
      marker.parent.rmtree()  # the version folder; then its config folder, when nothing else is in it
      paths.remove_empty([marker.parent.parent])


def note_run(prepared, workdir) -> None:
  """Records that the run in `workdir` uses the prepared copy `prepared` (copies of a user's file only)."""
  marker = epath.Path(prepared) / _SOURCE
  if not marker.exists():
    return
  made_from = json.loads(marker.read_text())
  if str(workdir) not in made_from.setdefault("runs", []):
    made_from["runs"].append(str(workdir))
    marker.write_text(json.dumps(made_from))


def _in_use(copy: epath.Path, made_from: dict) -> bool:
  """Whether a run noted in the copy's marker still records this copy as its data."""
  for run in made_from.get("runs", []):
    try:
      if json.loads((epath.Path(run) / records.RECORD_FILE).read_text())["prepared_dir"] == str(copy):
        return True
    except (OSError, ValueError, KeyError):  # the run was deleted, or its record is not this kind
      continue
  return False
