"""One rule for every path a user gives: `~` and environment variables expanded, local paths made absolute
(relative ones against the directory the run starts in), URIs such as gs://bucket/x kept as given; and one
rule for every export's --out folder (`fresh_folder`)."""
import os
import pathlib
import shutil

from flaxforge.core.errors import UserError


def expand(path: str) -> str:
  """`path` with `~` and `$VAR`/`${VAR}` expanded; local paths absolute; "" stays "" (meaning: the default)."""
  path = os.path.expandvars(os.path.expanduser(str(path or "")))
  if not path or "://" in path:
    return path
  return os.path.abspath(path)


def remove_empty(folders) -> None:
  """Removes each folder (epath.Path) that is empty, in the order given; keeps one that holds anything or
  is not there (epath reports "not empty" as a ValueError, a local OS as an OSError)."""
  for folder in folders:
    try:
      folder.rmdir()
    except (OSError, ValueError):
      pass


def usual_permissions(path) -> None:
  """Gives a local file the permissions open() would have given it (0o666 less the umask): safetensors
  writes its files readable by their owner only, and an exported model is meant to be shared."""
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(path, 0o666 & ~umask)


def fresh_folder(out: str, marker: str) -> pathlib.Path:
  """The local folder `out` made ready for an export that identifies itself by the file `marker` (e.g.
  "manifest.json"): created if new, emptied if it holds an earlier export (has `marker`). Raises UserError
  for a file, a non-empty folder without `marker` (a run's work directory, a model folder, anything else:
  never overwritten), or a folder that cannot be created."""
  folder = pathlib.Path(out)
  if folder.exists() and not folder.is_dir():
    raise UserError(f"{out} is a file, not a folder; pass a new or empty --out folder")
  if folder.exists() and any(folder.iterdir()):
    if not (folder / marker).is_file():
      raise UserError(f"{out} holds files and no {marker}, so it is not an earlier export; pass a new or "
                      "empty --out folder")
    shutil.rmtree(folder)
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create {out} ({e.strerror or e}); pass a writable --out folder") from e
  return folder
