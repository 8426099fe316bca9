"""Datasets by name: a built-in loader or the user's own module (`my_data.loader` or `path/to/loader.py`),
whose `load(cfg)` returns a `data.dataset.Dataset` (random-access splits, JSON info and assets)."""
from flaxforge.core import imports
from flaxforge.data import fields

_LOADERS = {
    "digits": "flaxforge.data.digits",
    "20newsgroups": "flaxforge.data.newsgroups",
    "text_file": "flaxforge.data.text_files",
    "lm_text": "flaxforge.data.lm_text",
    "synthetic": "flaxforge.data.synthetic",
    "fashion_mnist": "flaxforge.data.fashion_mnist",
    "image_folder": "flaxforge.data.image_folder",
    "tabular": "flaxforge.data.tabular",
}


def load(cfg):
  """`cfg` is `config.data`; its `name` (data.fields.Dataset) picks the loader."""
  return imports.resolve(fields.Dataset.read(cfg).name, _LOADERS, "load", "data.name", "dataset").load(cfg)


def recorded(name: str) -> str:
  """`data.name` as a run records it (core/imports.py `recorded`: a module of the user's folder as its file)."""
  return imports.recorded(name, _LOADERS)
