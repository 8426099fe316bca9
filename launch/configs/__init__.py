"""The shipped configs, and the one resolver of a config name or path: `path` for the command line (absl reads
the file it names) and `load` for the Python API."""
import difflib
import importlib.util
import os

import ml_collections

from flaxforge.core import config_fields
from flaxforge.core.errors import UserError

FOLDER = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(FOLDER))
DEFAULT = os.path.join(FOLDER, "default.py")


def shipped() -> list[str]:
  """Names of the configs in this folder (what --config=NAME accepts)."""
  names = []
  for file in sorted(os.listdir(FOLDER)):
    if file.endswith(".py") and file != "base.py" and not file.startswith("_"):
      with open(os.path.join(FOLDER, file), encoding="utf-8") as f:
        names += [file[:-3]] if "def get_config" in f.read() else []
  return names


def holding(field: str) -> list[str]:
  """The shipped configs that have the dotted `field` ("data.path"), for a hint when the chosen one lacks it."""
  return [name for name in shipped() if field in config_fields.flatten(_execute(os.path.join(FOLDER, name + ".py")))]


def unknown_field(field: str) -> str:
  """The one-line fix for a `field` the chosen config lacks: the shipped configs that have it, if any."""
  names = holding(field)
  if names:
    return f"{field} is a field of {', '.join(names)}; pass --config=NAME (one of them) or --config=YOUR_CONFIG.py"
  return "flaxforge train --help lists the fields a config has"


def path(value: str) -> str:
  """A config name or path as its file: a path (from this folder, else from the package root, so README
  commands work anywhere), or a shipped config's name. ml_collections' FILE:ARGUMENT form is kept."""
  file, colon, argument = value.partition(":")
  candidates = [file, os.path.join(_PACKAGE_ROOT, file)] if file else []
  if "/" not in file and not file.endswith(".py"):
    candidates.append(os.path.join(FOLDER, file + ".py"))
  found = next((c for c in candidates if os.path.isfile(c)), None)
  if found:
    return found + colon + argument
  names = shipped()
  guess = difflib.get_close_matches(os.path.basename(file).removesuffix(".py"), names, n=1)
  raise UserError(f"config {value!r} is neither a file nor a shipped config"
                  f"{f' (did you mean {guess[0]!r}?)' if guess else ''}; shipped configs: {', '.join(names)}; "
                  "pass --config=NAME or --config=PATH/TO/CONFIG.py")


def load(config) -> ml_collections.ConfigDict:
  """`config` as a ConfigDict: as given; a shipped config's name or a config file (`path`); or a dict of
  {"section.field": value} overrides on the default config. UserError for an unknown name or field."""
  if isinstance(config, dict):
    return _override(_execute(DEFAULT), config)
  if isinstance(config, str):
    return _execute(path(config))
  return config


def _execute(file: str) -> ml_collections.ConfigDict:
  file, _, argument = file.partition(":")
  spec = importlib.util.spec_from_file_location("flaxforge_config", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(argument) if argument else module.get_config()


def _override(config: ml_collections.ConfigDict, overrides: dict) -> ml_collections.ConfigDict:
  for field, value in overrides.items():
    *sections, name = field.split(".")
    node = config
    for section in sections:
      node = node.get(section) if hasattr(node, "items") else None
    if not hasattr(node, "items") or name not in node:
      raise UserError(f"unknown config field {field!r}; {unknown_field(field)}")
    try:
      node[name] = value
    except (TypeError, ValueError) as e:
      raise UserError(f"config.{field} = {value!r}: {e}; pass a value of the field's type") from None
  return config
