"""A run's own config (its work directory's config.json): the default --config of `flaxforge train
--workdir=DIR` when DIR already holds a run, so that --config.FIELD=VALUE overrides of a resumed run are
checked against the run's own fields and types (not the default config's)."""
import ml_collections

from flaxforge.core import run_config


def get_config(workdir: str) -> ml_collections.ConfigDict:
  return run_config.read(workdir)
