"""A field the chosen config lacks but a shipped config has (issue 27, item 5): forgetting `--config=text_csv`
names the configs that have the field, on the command line and in the Python API alike."""
import pathlib
import re
import subprocess
import sys

import pytest

import flaxforge
from conftest import cli_env
from flaxforge.core.errors import UserError

FLAXFORGE = str(pathlib.Path(sys.executable).parent / "flaxforge")
HINT = ("data.path is a field of dpo, finetune_lm, finetune_text, gpt_text, image_folder, tabular_csv, text_csv; "
        "pass --config=NAME (one of them) or --config=YOUR_CONFIG.py")


@pytest.mark.slow  # a subprocess CLI run
def test_the_command_names_the_configs_that_have_the_field(tmp_path):
  proc = subprocess.run([FLAXFORGE, "train", f"--workdir={tmp_path / 'run'}", "--config.data.path=reviews.csv"],
                        cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
  assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
      f"error: unknown config field 'path' in --config.data.path=reviews.csv; {HINT}"], proc.stderr


def test_the_api_names_them_too(tmp_path):
  with pytest.raises(UserError, match=re.escape(f"unknown config field 'data.path'; {HINT}")):
    flaxforge.train({"data.path": "reviews.csv"}, str(tmp_path / "run"))
