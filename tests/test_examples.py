"""examples/ run from their own folders as a user runs them (one CPU device, a subprocess each, the
`flaxforge` command or `python train.py`)."""
import json
import pathlib
import subprocess
import sys

import pytest

from conftest import cli_env

pytestmark = pytest.mark.slow  # the examples as subprocesses, one on real data

REPO = pathlib.Path(__file__).resolve().parent.parent
FLAXFORGE = str(pathlib.Path(sys.executable).parent / "flaxforge")


def _run(folder, *args, tmp_path):
  """The stdout of `args` run in examples/`folder`, which must succeed."""
  env = cli_env(TFDS_DATA_DIR=str(tmp_path / "tfds"))
  proc = subprocess.run(list(args), cwd=REPO / "examples" / folder, env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def test_text_classifier_example(tmp_path):
  out = _run("text_classifier", sys.executable, "train.py", str(tmp_path / "run"), tmp_path=tmp_path)
  lines = out.splitlines()
  assert any(line.startswith("early stopping after step") for line in lines), out
  assert any(line.startswith("test (the best checkpoint, step") for line in lines), out
  accuracy = [float(line.split()[-1]) for line in lines if line.startswith("test accuracy ")]
  assert len(accuracy) == 1 and accuracy[0] >= 0.9, out  # three topics with cue words; chance is 0.33
  assert lines[-3:] == ["space: The astronaut saw a comet from orbit", "cooking: Knead the dough with butter and salt",
                        "football: The striker scored a penalty goal"]


def test_fashion_convnet_example_by_import_path(tmp_path, real_datasets):
  """The README's two commands, with a 400-step budget instead of 5 epochs."""
  run = tmp_path / "run"
  out = _run("fashion_convnet", FLAXFORGE, "train", "--config=config.py", f"--workdir={run}",
             f"--config.data.manual_dir={real_datasets / 'fashion_mnist'}", "--config.train.num_steps=400",
             "--config.train.eval_every_steps=400", "--config.model.widths=(32,64)", tmp_path=tmp_path)
  model_file = REPO / "examples" / "fashion_convnet" / "my_models" / "convnet.py"  # recorded as its file
  assert json.loads((run / "config.json").read_text())["model"]["name"] == str(model_file)
  test = json.loads(out.strip().splitlines()[-1])
  assert test["split"] == "test" and test["accuracy"] >= 0.83, out  # 0.87 here after 400 steps of 64
  out = _run("fashion_convnet", FLAXFORGE, "predict", f"--workdir={run}", "--input=samples/", "--json",
             tmp_path=tmp_path)
  for line in map(json.loads, out.splitlines()):  # samples/<index>_<true class>.png
    assert line["top"][0]["label"].replace("/", "_").replace(" ", "_") == pathlib.Path(line["input"]).stem.split("_", 1)[1]


def test_penguins_table_example(tmp_path):
  run = tmp_path / "run"
  out = _run("penguins_table", FLAXFORGE, "train", "--config=config.py", f"--workdir={run}", tmp_path=tmp_path)
  assert json.loads(out.strip().splitlines()[-1])["accuracy"] >= 0.95, out
  out = _run("penguins_table", FLAXFORGE, "predict", f"--workdir={run}", "--input=new_penguins.csv",
             tmp_path=tmp_path)
  assert [line.split()[0] for line in out.splitlines()] == ["Adelie", "Gentoo", "Chinstrap", "Gentoo"], out
