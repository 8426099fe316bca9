"""One rule for every path a user gives: `~` and environment variables expanded, local paths made absolute
(relative ones against the directory the run starts in), URIs such as gs://bucket/x kept as given."""
import os


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
