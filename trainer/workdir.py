"""The work directory's JSON files: the resolved config, the dataset info and the assets beside the
checkpoints. Everything a later eval or predict needs is here as JSON; nothing is pickled."""
import json
import os
import uuid

import jax
import ml_collections
from etils import epath

from flaxforge.core.errors import UserError

CHECKPOINTS = "checkpoints"


def resolve(path: str) -> epath.Path:
  """A local path made absolute (Orbax refuses relative ones); gs:// and other URIs as given."""
  return epath.Path(path if "://" in str(path) else os.path.abspath(os.path.expanduser(str(path))))


def prepare(path: str) -> epath.Path:
  """Creates the work directory and proves it is writable (process 0), or says how to fix it."""
  workdir = resolve(path)
  if jax.process_index() == 0:
    probe = workdir / f".write-test-{uuid.uuid4().hex}"
    try:
      workdir.mkdir(parents=True, exist_ok=True)
      probe.write_text("ok")
      probe.unlink()
    except OSError as e:
      raise UserError(f"cannot write the work directory {workdir} ({e.strerror or e}); "
                      "pass a writable --workdir") from e
  return workdir


def write_json(path: epath.Path, value) -> None:
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True))


def read_json(path: epath.Path):
  if not path.exists():
    raise UserError(f"{path} not found: is --workdir a directory that flaxforge.launch.train wrote?")
  return json.loads(path.read_text())


def save_run(workdir: epath.Path, config, info: dict, assets: dict) -> None:
  write_json(workdir / "config.json", json.loads(config.to_json_best_effort()))
  write_json(workdir / "info.json", info)
  for name, value in assets.items():
    write_json(workdir / "assets" / f"{name}.json", value)


def load_config(workdir: epath.Path) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(read_json(workdir / "config.json"))


def load_info(workdir: epath.Path) -> dict:
  return read_json(workdir / "info.json")


def load_asset(workdir: epath.Path, name: str):
  return read_json(workdir / "assets" / f"{name}.json")
