"""Datasets by name. Each loader returns a `data.dataset.Dataset` built from TFDS array_record files."""
import importlib

from trainer.errors import UserError

_LOADERS = {
    "digits": "data.digits",
    "20newsgroups": "data.newsgroups",
    "text_file": "data.text_files",
    "lm_text": "data.lm_text",
    "synthetic": "data.synthetic",
}


def load(cfg):
  """`cfg` is `config.data`; `cfg.name` picks the loader."""
  if cfg.name not in _LOADERS:
    raise UserError(f"unknown dataset {cfg.name!r}; set --config.data.name to one of: {', '.join(_LOADERS)}")
  return importlib.import_module(_LOADERS[cfg.name]).load(cfg)
