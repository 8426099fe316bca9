"""The text preprocessing fields a text config carries: `data/text.py` TextEncoder's options, with its defaults."""
import dataclasses

from flaxforge.data import text


def add(data, *, validation_fraction=0.1, split_seed=0, **options):
  """Adds the encoder's fields to `config.data` (its defaults, overridden by `options`), so each can be set
  from the command line."""
  defaults = {f.name: f.default for f in dataclasses.fields(text.TextEncoder) if f.name != "vocab"}
  defaults["remove"] = ""  # a comma-separated string on the command line: headers,footers,quotes
  unknown = set(options) - set(defaults)
  if unknown:
    raise TypeError(f"not TextEncoder options: {sorted(unknown)}")
  for name, value in {**defaults, **options}.items():
    setattr(data, name, value)
  data.validation_fraction = validation_fraction
  data.split_seed = split_seed
