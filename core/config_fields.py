"""The config-field machinery. Each config field is declared once, by its owner, in a section: a frozen
dataclass of `field(default, description, range=..., choices=...)` (models/fields.py, data/fields.py,
trainer/fields.py; JAX-free, so `--help` and a bad value answer before JAX starts). Configs are composed from
sections (`compose`), code reads its section as a typed object (`Section.read`), `--help` prints the fields a
config holds with their descriptions and ranges or choices (`by_section`), and `validate` checks a config
against them, on the command line and in Python alike.
"""
import dataclasses
import math
from typing import Any, ClassVar

import ml_collections

from flaxforge.core.errors import UserError


@dataclasses.dataclass(frozen=True)
class Range:
  """low <= value <= high (or strictly, with the open flags); `also` lists special values outside it."""
  low: float = -math.inf
  high: float = math.inf
  low_open: bool = False
  high_open: bool = False
  integer: bool = False
  also: tuple = ()

  def allows(self, value) -> bool:
    if value in self.also:
      return True
    if isinstance(value, float) and (math.isnan(value) or (self.integer and not value.is_integer())):
      return False
    above = value > self.low if self.low_open else value >= self.low
    below = value < self.high if self.high_open else value <= self.high
    return above and below

  def __str__(self):
    kind = "integer" if self.integer else "number"
    parts = []
    if self.low > -math.inf:
      parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
    if self.high < math.inf:
      parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
    also = f" or {', '.join(map(str, self.also))}" if self.also else ""
    return f"{kind} {' and '.join(parts)}{also}".strip()


def count(low=0, also=()):
  return Range(low=low, integer=True, also=also)


def fraction(high_open=True):
  return Range(0, 1, high_open=high_open)


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AXIS = count(1, also=(-1,))


def _numbers(value) -> list:
  if isinstance(value, bool) or value is None:
    return []
  if isinstance(value, (int, float)):
    return [value]
  if isinstance(value, (tuple, list)):
    return [v for item in value for v in _numbers(item)]
  return []


@dataclasses.dataclass(frozen=True)
class Declared:
  """One field's declaration: its default, a one-line description, and its allowed values (a numeric range,
  applied to a number and to each number of a tuple, or a tuple of choices)."""
  default: Any
  description: str
  range: Range | None = None
  choices: tuple = ()

  def allowed(self) -> str:
    """What `--help` prints in brackets: the range, or the choices."""
    if self.choices:
      return "one of: " + ", ".join(map(str, self.choices))
    return str(self.range) if self.range else ""

  def check(self, name: str, value):
    """UserError naming `config.{name}`, its value and what is allowed, when `value` is not allowed."""
    if self.choices and value not in self.choices:
      raise UserError(f"config.{name} = {value!r} is not one of: {', '.join(map(str, self.choices))}; "
                      f"set --config.{name} to one of them")
    if self.range and not all(self.range.allows(n) for n in _numbers(value)):
      raise UserError(f"config.{name} = {value!r} is out of range: allowed is {self.range}; "
                      f"set --config.{name} to such a value")


def field(default, description: str, *, range: Range | None = None, choices=()):  # pylint: disable=redefined-builtin
  """A section's field: `default`, a one-line `description`, and a numeric `range` or the `choices`."""
  return dataclasses.field(default=default,
                           metadata={"declared": Declared(default, description, range, tuple(choices))})


class Section:
  """Base of a config section's declaration: a frozen dataclass whose fields are `field(...)`s.

  SECTION is the dotted place in the config ("" for the top level, "data", "model.lora", ...); several
  sections may share a place (the trainer's and the dataset's fields both live in `config.data`), each field
  name once. TITLE is the heading `--help` prints them under.
  """
  SECTION: ClassVar[str] = ""
  TITLE: ClassVar[str] = "run"

  @classmethod
  def declared(cls) -> dict[str, Declared]:
    """{field name: its declaration}, in declaration order."""
    return {f.name: f.metadata["declared"] for f in dataclasses.fields(cls)}

  @classmethod
  def read(cls, node):
    """This section's values from `node` (its place in a config: a ConfigDict or dict; a field it does not
    hold takes its declared default), each checked against its declaration (UserError)."""
    values = {}
    for name, declared in cls.declared().items():
      value = node[name] if node is not None and name in node else declared.default
      if isinstance(value, list):
        value = tuple(value)
      declared.check(_join(cls.SECTION, name), value)
      values[name] = value
    return cls(**values)

  @classmethod
  def of(cls, config):
    """`read` of this section's place in the whole `config`."""
    node = config
    for part in filter(None, cls.SECTION.split(".")):
      node = node[part] if node is not None and part in node else None
    return cls.read(node)


def _join(section: str, name: str) -> str:
  return f"{section}.{name}" if section else name


def declarations(sections) -> dict[str, Declared]:
  """{"data.batch_size": Declared, ...} of `sections`; TypeError when two declare the same field."""
  out = {}
  for section in sections:
    for name, declared in section.declared().items():
      full = _join(section.SECTION, name)
      if full in out:
        raise TypeError(f"config field {full!r} is declared twice ({section.__name__})")
      out[full] = declared
  return out


def titles(sections) -> dict[str, str]:
  """{dotted place: the title `--help` prints it under}."""
  return {section.SECTION: section.TITLE for section in sections}


def compose(*sections) -> ml_collections.ConfigDict:
  """A config holding every field of `sections` at its declared default (a field declared twice: TypeError)."""
  config = ml_collections.ConfigDict()
  for full, declared in declarations(sections).items():
    *places, name = full.split(".")
    node = config
    for place in places:
      if place not in node:
        node[place] = ml_collections.ConfigDict()
      node = node[place]
    node[name] = declared.default
  return config


def flatten(config, prefix: str = "") -> dict:
  """{"data.batch_size": 32, ...} of a ConfigDict (or nested dicts)."""
  out = {}
  for key, value in config.items():
    if hasattr(value, "items"):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def validate(config, sections):
  """Raises UserError naming the first field of `config` that its declaration in `sections` does not allow
  (out of range, or not one of the choices). Fields no section declares are not checked (an import-path
  model's or dataset's own fields)."""
  declared = declarations(sections)
  for name, value in flatten(config).items():
    if name in declared:
      declared[name].check(name, value)


def by_section(config, sections) -> dict:
  """{section title: [(field, value, description, allowed)]} of the fields `config` holds, sections and
  fields in declaration order; a field no section declares comes last, with no description."""
  declared = declarations(sections)
  heading = titles(sections)
  order = {name: i for i, name in enumerate(declared)}
  grouped = {}
  for name, value in sorted(flatten(config).items(), key=lambda kv: order.get(kv[0], len(order))):
    place = name.rpartition(".")[0]
    title = heading.get(place, place or "run")
    entry = declared.get(name)
    grouped.setdefault(title, []).append((name, value, entry.description if entry else "",
                                          entry.allowed() if entry else ""))
  return grouped
