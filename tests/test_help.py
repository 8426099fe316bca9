"""Help matches behaviour (issue 27, item 9): each shipped config's `--help` lists only the fields that config
reads, and the JSON keys a command's help names are the keys its output has."""
import json
import pathlib
import re
import subprocess
import sys

import pytest

import csv_run
from conftest import cli_env
from flaxforge.core import config_fields
from flaxforge.data import fields as data_fields
from flaxforge.launch import configs
from flaxforge.models import fields as model_fields
from flaxforge.trainer import fields

FLAXFORGE = str(pathlib.Path(sys.executable).parent / "flaxforge")
# A shipped config may hold a section its data name does not read while that name is its default, when its
# docstring offers the other name: finetune_text's data.manual_dir, for --config.data.name=20newsgroups; and
# image_folder's pretrained ViT (--config.model.pretrained=VIT_DIR, the registry's "vit"), for the convnet.
ALTERNATIVES = {"finetune_text": {data_fields.Archive},
                "image_folder": {model_fields.Pretrained, model_fields.Encoder, model_fields.LoRA}}


def _listed(config) -> set[str]:
  """The fields `--help` lists for `config` (launch/common.py help_text prints by_section)."""
  return {name for described in config_fields.by_section(config, fields.sections_of(config)).values()
          for name, *_ in described}


@pytest.mark.parametrize("name", configs.shipped())
def test_help_lists_only_the_fields_the_config_reads(name):
  config = configs.load(name)
  reads = fields.RUN + model_fields.candidates(config.model.name) + data_fields.candidates(config.data.name)
  reads += tuple(ALTERNATIVES.get(name, ()))
  if config.data.name != "lm_text":  # a classifier: its loss may weigh the classes
    reads += (fields.ClassWeight,)
  if "preference" in config:  # dpo: the preference objective's own section
    reads += (fields.Preference,)
  listed = _listed(config)
  assert listed <= set(config_fields.declarations(reads)), sorted(listed - set(config_fields.declarations(reads)))
  tokenizer = config.data.get("tokenizer", "")
  vocabulary = {f"data.{f}" for f in data_fields.Vocabulary.declared()}
  if tokenizer in ("hf", "bytes"):  # a pretrained tokenizer or bytes fit no vocabulary
    assert not listed & vocabulary, sorted(listed & vocabulary)
  if tokenizer in ("word", "char"):
    assert "data.tokenizer_path" not in listed
  assert ("train.class_weight" in listed) == (config.data.name != "lm_text")


def _keys(value) -> set[str]:
  """Every key of a JSON value: of its objects, nested ones and those in lists included."""
  if isinstance(value, dict):
    return set(value) | {k for v in value.values() for k in _keys(v)}
  if isinstance(value, list):
    return {k for v in value for k in _keys(v)}
  return set()


def _json_flag_keys(command: str) -> set[str]:
  """The keys named in the first {...} of the command's --json flag help (a text run's output)."""
  out = subprocess.run([FLAXFORGE, command, "--help"], capture_output=True, text=True, env=cli_env(),
                       check=True).stdout
  line = next(l for l in out.splitlines() if l.strip().startswith("--json"))
  named = re.search(r"\{.*?\}+\]?\}", line).group(0)
  return set(re.findall(r"[a-z_]+", named))


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("help")
  path = csv_run.write_topics(tmp / "topics.csv")
  csv_run.train(csv_run.config(tmp, path), tmp / "run")
  return tmp / "run"


@pytest.mark.slow  # a whole training, subprocess CLI runs
def test_the_json_keys_help_names_are_those_predict_and_explain_print(text_run):
  """predict's help named `input` where a text run prints `text`; explain's named `logits` for `logit`."""
  for command in ("predict", "explain"):
    out = subprocess.run([FLAXFORGE, command, f"--workdir={text_run}", "--json", "rocket orbit moon"],
                         capture_output=True, text=True, env=cli_env())
    assert out.returncode == 0, out.stderr[-2000:]
    printed = _keys(json.loads(out.stdout.strip().splitlines()[-1]))
    assert _json_flag_keys(command) == printed, command
