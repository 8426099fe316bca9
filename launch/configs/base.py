"""The fields every run has (the trainer's, a model's name, a dataset's name and folder), at their declared
defaults, plus the sections a config names: what each shipped config starts from.

Each field's default, description and range or choices is declared once, in its owner's section
(trainer/fields.py, models/fields.py, data/fields.py; `flaxforge train --help` prints them).
"""
import ml_collections

from flaxforge.core import config_fields
from flaxforge.data import fields as data_fields
from flaxforge.models import fields as model_fields
from flaxforge.trainer import fields as trainer_fields


def get_config(*sections) -> ml_collections.ConfigDict:
  """A config of the run's sections and `sections` (a model's, a dataset's), every field at its default."""
  return config_fields.compose(*trainer_fields.RUN, data_fields.Dataset, model_fields.Model, *sections)
