"""One installed name: a user's own `data/`, `models.py` and `trainer.py` do not shadow the trainer, and a
regular wheel holds only `flaxforge` and trains from outside the repository."""
import csv
import json
import pathlib
import random
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import REPO, cli_env

pytestmark = pytest.mark.slow  # the wheel build


def _run(python, *args, cwd):
  proc = subprocess.run([str(python), *args], cwd=cwd, env=cli_env(PYTHONPATH=None), capture_output=True,
                        text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


# `python -m flaxforge.launch.COMMAND` (the working directory first on sys.path) and the console command.
COMMANDS = {"python -m": lambda name: [sys.executable, "-m", f"flaxforge.launch.{name}"],
            "console": lambda name: [str(pathlib.Path(sys.executable).parent / "flaxforge"), name]}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_project_with_data_models_and_trainer_of_its_own_trains_and_evaluates(tmp_path, command):
  """The issue's report: `data/` (a plain folder, as users keep CSVs), `models.py` and `trainer.py` in the
  working directory, which `python -m` puts first on sys.path; train, then eval, with each command."""
  (tmp_path / "data").mkdir()
  rng = random.Random(0)
  with open(tmp_path / "data" / "reviews.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["text", "label"])
    for _ in range(200):
      label = rng.choice(["good", "bad"])
      cue = "great lovely superb" if label == "good" else "awful dull broken"
      writer.writerow([" ".join(rng.choices(cue.split(), k=3) + rng.choices("the a it was".split(), k=5)), label])
  for name in ("models.py", "trainer.py"):
    (tmp_path / name).write_text(f"raise RuntimeError('the user\\'s own {name} was imported')\n")
  proc = _run(*COMMANDS[command]("train"), f"--config={REPO}/launch/configs/text_csv.py", "--workdir=runs/r1",
              "--config.data.path=data/reviews.csv", "--config.data.data_dir=tfds", "--config.data.seq_len=16",
              "--config.model.embed_dim=16", "--config.train.num_epochs=10", "--config.train.progress_bar=false",
              cwd=tmp_path)
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result["split"] == "test" and result["accuracy"] >= 0.8, result  # two classes: chance is 0.5
  assert (tmp_path / "runs" / "r1" / "checkpoints").is_dir()
  proc = _run(*COMMANDS[command]("eval"), "--workdir=runs/r1", cwd=tmp_path)  # the recorded split, again
  evaluated = json.loads(proc.stdout.strip().splitlines()[-1])
  assert evaluated["split"] == "test" and evaluated["accuracy"] == result["accuracy"], (evaluated, result)


def test_the_wheel_holds_only_flaxforge_and_trains_in_a_fresh_venv(tmp_path):
  source = tmp_path / "source"  # a copy: an in-tree build would leave build/ and *.egg-info in the checkout
  shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", ".pytest_tfds", "build", "dist",
                                                              "*.egg-info", "__pycache__", "runs"))
  _run(sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", tmp_path / "dist",
       cwd=source)
  [wheel] = (tmp_path / "dist").glob("flaxforge-*.whl")
  with zipfile.ZipFile(wheel) as z:
    top = {name.split("/")[0] for name in z.namelist()}
  assert top == {"flaxforge", wheel.name.split("-py")[0] + ".dist-info"}, top
  assert "flaxforge/launch/configs/tiny.py" in zipfile.ZipFile(wheel).namelist()

  venv = tmp_path / "venv"
  _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
  python = venv / "bin" / "python"
  _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel, cwd=tmp_path)
  site = pathlib.Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                           cwd=tmp_path).stdout.strip())
  # The dependencies come from the test venv; a .pth line only adds a path (the editable finder's import
  # line in that folder's own .pth files does not run), so flaxforge can only come from the wheel.
  (site / "test_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
  where = _run(python, "-c", "import flaxforge; print(flaxforge.__file__)", cwd=tmp_path).stdout.strip()
  assert pathlib.Path(where).is_relative_to(venv), where
  proc = _run(python, "-m", "flaxforge.launch.train", f"--config={site}/flaxforge/launch/configs/tiny.py",
              f"--workdir={tmp_path}/run", cwd="/tmp")
  assert json.loads(proc.stdout.strip().splitlines()[-1])["accuracy"] > 0.5
