"""Bad input ends in ONE line naming the fix, exit status 2, and no traceback (without --verbose)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import cli_env

pytestmark = pytest.mark.slow  # subprocess CLI runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *args, config="launch/configs/tiny.py"):
  return subprocess.run([sys.executable, "-m", module, f"--config={config}", *args] if module == "flaxforge.launch.train"
                        else [sys.executable, "-m", module, *args], cwd=REPO, env=cli_env(),
                        capture_output=True, text=True)


def _one_line_error(result) -> str:
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, result.stderr[-3000:]
  return errors[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("trained")
  result = _run("flaxforge.launch.train", f"--workdir={workdir}", "--config.train.num_steps=10")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_unknown_config_field(tmp_path):
  line = _one_line_error(_run("flaxforge.launch.train", f"--workdir={tmp_path}", "--config.train.num_stepz=3"))
  assert "unknown config field" in line and "num_stepz" in line


# A mistyped value (--config.data.batch_size=abc): test_cli.py test_config_mistakes_end_in_one_line_and_exit_2.
def test_unknown_dataset(tmp_path):
  line = _one_line_error(_run("flaxforge.launch.train", f"--workdir={tmp_path}", "--config.data.name=nope"))
  assert "unknown dataset 'nope'" in line and "--config.data.name" in line


def test_missing_manual_download_dir(tmp_path):
  missing = tmp_path / "no_such_folder"
  line = _one_line_error(_run("flaxforge.launch.train", f"--workdir={tmp_path / 'w'}", f"--config.data.manual_dir={missing}",
                              f"--config.data.data_dir={tmp_path / 'tfds'}",
                              config="launch/configs/text_bow_20ng.py"))
  assert "not found in" in line and str(missing) in line and "--config.data.manual_dir" in line


def test_checkpoint_of_another_model_lists_the_differences(trained):
  line = _one_line_error(_run("flaxforge.launch.train", f"--workdir={trained}", "--config.model.hidden=(7,)",
                              "--config.train.num_steps=20"))
  # The run's identity check answers before any array is read: it names the differing field, old -> new.
  assert "holds a run with other settings (model.hidden: [64] -> [7])" in line and "new --workdir" in line, line
  assert json.loads((trained / "config.json").read_text())["model"]["hidden"] != [7]  # the run's config kept


def test_unwritable_workdir(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  line = _one_line_error(_run("flaxforge.launch.train", f"--workdir={blocker / 'run'}"))
  assert "cannot write the work directory" in line and "writable --workdir" in line


def test_step_that_does_not_exist(trained):
  line = _one_line_error(_run("flaxforge.launch.eval", f"--workdir={trained}", "--step=999"))
  assert "no checkpoint at step 999" in line and "available steps: 10" in line


def test_a_missing_checkpoint_file_is_one_line_and_verbose_shows_the_traceback(trained, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  arrays = list((workdir / "checkpoints" / "10" / "state").glob("ocdbt.process_*/d/*"))
  assert arrays
  for path in arrays:
    path.unlink()
  line = _one_line_error(_run("flaxforge.launch.eval", f"--workdir={workdir}", "--step=10"))
  assert "checkpoint step 10" in line and "is damaged" in line
  verbose = _run("flaxforge.launch.eval", f"--workdir={workdir}", "--step=10", "--verbose")
  assert verbose.returncode == 2 and "Traceback (most recent call last)" in verbose.stderr
  assert "is damaged" in verbose.stderr


def test_a_run_that_refuses_to_start_leaves_no_empty_folders(tmp_path):
  """A bad row stops the first preparation: the work directory (and its new parents) and the prepared
  copy's folders it made are removed again, a folder that held something is kept."""
  (tmp_path / "bad.csv").write_text("text,label\nhello world,a\n,b\ngood day,a\n")
  (tmp_path / "tfds" / "kept").mkdir(parents=True)
  result = _run("flaxforge.launch.train", f"--workdir={tmp_path}/runs/new/run",
                f"--config.data.path={tmp_path}/bad.csv", f"--config.data.data_dir={tmp_path}/tfds",
                config="launch/configs/text_csv.py")
  assert "row 3" in _one_line_error(result)
  left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
  assert left == ["bad.csv", "tfds", "tfds/kept"], left
