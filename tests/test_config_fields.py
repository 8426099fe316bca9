"""core/config_fields.py: sections declare each field once; configs are composed from them, read as typed
objects, checked (ranges and choices) and described by --help from the same declarations."""
import dataclasses

import pytest

from flaxforge.core import config_fields
from flaxforge.core.config_fields import Section, count, field
from flaxforge.core.errors import UserError
from flaxforge.data import fields as data_fields
from flaxforge.launch import configs
from flaxforge.models import fields as model_fields
from flaxforge.trainer import fields


@dataclasses.dataclass(frozen=True)
class Knobs(Section):
  SECTION, TITLE = "model.knobs", "knobs"
  width: int = field(8, "a width", range=count(1))
  kind: str = field("a", "a kind", choices=("a", "b"))
  sizes: tuple = field((1, 2), "sizes", range=count(1))


def test_compose_puts_every_field_at_its_default_and_read_gives_a_typed_object():
  config = config_fields.compose(Knobs)
  assert config.model.knobs.to_dict() == {"width": 8, "kind": "a", "sizes": (1, 2)}
  config.model.knobs.width = 3
  knobs = Knobs.of(config)
  assert isinstance(knobs, Knobs) and knobs.width == 3 and knobs.kind == "a"
  assert Knobs.read({}) == Knobs()  # a field the config lacks (an older run's config.json) takes its default
  with pytest.raises(dataclasses.FrozenInstanceError):
    knobs.width = 4  # pylint: disable=assigning-non-slot


def test_a_wrong_choice_or_range_is_one_line_naming_the_field_and_what_is_allowed():
  config = config_fields.compose(Knobs)
  config.model.knobs.kind = "c"
  with pytest.raises(UserError, match=r"^config.model.knobs.kind = 'c' is not one of: a, b; set "
                                      r"--config.model.knobs.kind to one of them$"):
    config_fields.validate(config, [Knobs])
  with pytest.raises(UserError, match="config.model.knobs.kind = 'c' is not one of"):
    Knobs.of(config)
  config.model.knobs.kind = "b"
  config.model.knobs.sizes = (4, 0)
  with pytest.raises(UserError, match=r"config.model.knobs.sizes = \(4, 0\) is out of range: allowed is integer >= 1"):
    config_fields.validate(config, [Knobs])


def test_a_field_declared_twice_is_refused():

  @dataclasses.dataclass(frozen=True)
  class Again(Section):
    SECTION = "model.knobs"
    width: int = field(2, "the same field again")

  with pytest.raises(TypeError, match="'model.knobs.width' is declared twice"):
    config_fields.compose(Knobs, Again)


def test_every_shipped_config_holds_only_declared_fields_each_within_its_declaration():
  for name in configs.shipped():
    config = configs.load(name)
    sections = fields.sections_of(config)
    assert set(config_fields.flatten(config)) <= set(config_fields.declarations(sections)), name
    fields.validate(config)


def test_help_of_a_pretrained_text_config_lists_choices_and_no_word_vocabulary_field():
  config = configs.load("finetune_text")
  described = {name: (description, allowed) for rows in config_fields.by_section(
      config, fields.sections_of(config)).values() for name, _, description, allowed in rows}
  assert described["model.pool"][1] == "one of: cls, mean, pooler"  # not the text CNN's window range
  assert described["data.tokenizer"][1] == "one of: word, char, hf"
  for unused in data_fields.Vocabulary.declared():  # padding, truncating, num_words, filters, ...
    assert f"data.{unused}" not in described, unused
  for unused in model_fields.TransformerShape.declared():  # the pretrained folder decides the shape
    assert f"model.{unused}" not in described, unused


def test_the_python_api_resolves_names_files_and_overrides_as_the_command_line_does(tmp_path):
  assert configs.load("tiny").train.num_steps == 40
  assert configs.load(configs.path("launch/configs/tiny.py")).train.num_steps == 40
  assert configs.load({"train.num_steps": 7}).train.num_steps == 7
  with pytest.raises(UserError, match=r"config 'tnyi' is neither a file nor a shipped config \(did you mean 'tiny'\?\)"):
    configs.load("tnyi")
  with pytest.raises(UserError, match="unknown config field 'train.num_stepz'"):
    configs.load({"train.num_stepz": 7})
