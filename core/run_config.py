"""A run's JSON files, read without JAX: above all its resolved config (config.json in its work directory),
which `flaxforge train --workdir=DIR` without --config also uses as DIR's default config at flag parsing."""
import json

import ml_collections
from etils import epath

from flaxforge.core import paths
from flaxforge.core.errors import UserError

FILE = "config.json"


def read_json(path: epath.Path):
  """One of a run's JSON files. Raises UserError when it is missing or not JSON."""
  if not path.exists():
    raise UserError(f"{path} not found: is --workdir a directory that flaxforge.launch.train wrote?")
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise UserError(f"{path} is not JSON ({e}); flaxforge train wrote it: rerun the run in a new --workdir") from None


def exists(workdir) -> bool:
  """Whether the folder `workdir` (epath.Path, or a path as a user gives it) holds a run's config.json."""
  return bool(workdir) and (epath.Path(paths.expand(str(workdir))) / FILE).exists()


def read(workdir) -> ml_collections.ConfigDict:
  """The config.json of the folder `workdir` (epath.Path, or a path as a user gives it) as a ConfigDict.
  Raises UserError when the folder holds none or it is not JSON."""
  return ml_collections.ConfigDict(read_json(epath.Path(paths.expand(str(workdir))) / FILE))
