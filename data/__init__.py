"""Datasets by name. Each loader returns a `data.dataset.Dataset` built from TFDS array_record files."""
import importlib

from flaxforge.core.errors import UserError

_LOADERS = {
    "digits": "flaxforge.data.digits",
    "20newsgroups": "flaxforge.data.newsgroups",
    "text_file": "flaxforge.data.text_files",
    "lm_text": "flaxforge.data.lm_text",
    "synthetic": "flaxforge.data.synthetic",
}


def load(cfg):
  """`cfg` is `config.data`; `cfg.name` picks the loader."""
  if cfg.name not in _LOADERS:
    raise UserError(f"unknown dataset {cfg.name!r}; set --config.data.name to one of: {', '.join(_LOADERS)}")
  return importlib.import_module(_LOADERS[cfg.name]).load(cfg)
