"""A run's own config (its work directory's config.json): the default --config of `flaxforge train
--workdir=DIR` when DIR already holds a run, so that --config.FIELD=VALUE overrides of a resumed run are
checked against the run's own fields and types (not the default config's)."""
import json

import ml_collections
from etils import epath

from flaxforge.core import paths


def get_config(workdir: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(json.loads((epath.Path(paths.expand(workdir)) / "config.json").read_text()))
