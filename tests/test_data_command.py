"""`flaxforge data list` and `flaxforge data clean` (issue 27, item 11): the prepared copies in a data directory,
with their size, age, source file and the runs that use them; the old unused ones removed, never a run's."""
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from flaxforge.data import prepared, records, text_files
from conftest import cli_env
from test_text_files import config, reviews, write_csv

FLAXFORGE = str(pathlib.Path(sys.executable).parent / "flaxforge")


def flaxforge(*args, cwd):
  return subprocess.run([FLAXFORGE, *args], cwd=cwd, env=cli_env(TFDS_DATA_DIR=None), capture_output=True,
                        text=True)


def _age(copy: str, days: float):
  """Makes the prepared copy look `days` old (when it was prepared or last noted by a run)."""
  stamp = time.time() - days * 86400
  for path in pathlib.Path(copy).iterdir():
    os.utime(path, (stamp, stamp))


@pytest.mark.slow  # subprocess CLI runs
def test_list_and_clean_prepared_copies(tmp_path):
  path = write_csv(tmp_path / "reviews.csv", reviews(60))
  used = text_files.load(config(tmp_path, path)).prepared_dir
  unused = text_files.load(config(tmp_path, path, num_words=50)).prepared_dir
  recent = text_files.load(config(tmp_path, path, num_words=60)).prepared_dir
  run = tmp_path / "run"
  run.mkdir()
  (run / records.RECORD_FILE).write_text(json.dumps({"prepared_dir": used}))
  prepared.note_run(used, run)
  for copy in (used, unused):
    _age(copy, 40)
  data_dir = tmp_path / "tfds"

  listed = flaxforge("data", "list", f"--data_dir={data_dir}", cwd=tmp_path)
  assert listed.returncode == 0, listed.stderr[-2000:]
  lines = listed.stdout.splitlines()
  line = {copy: next(l for l in lines if os.path.relpath(copy, data_dir) in l) for copy in (used, unused, recent)}
  assert f"from {path}" in line[unused] and f"used by {run}" in line[used] and "used by" not in line[unused]
  assert "40 days" in line[used] and "0 days" in line[recent]
  assert lines[-1].startswith("3 prepared copies, ")

  cleaned = flaxforge("data", "clean", f"--data_dir={data_dir}", "--older_than=30", cwd=tmp_path)
  assert cleaned.returncode == 0, cleaned.stderr[-2000:]
  assert not os.path.exists(unused) and os.path.exists(used) and os.path.exists(recent)
  assert f"removed {os.path.relpath(unused, data_dir)}" in cleaned.stdout
  assert "kept 1 copy a run uses" in cleaned.stdout.splitlines()[-1]

  (run / records.RECORD_FILE).unlink()  # the run is gone: its copy is free to go too
  assert flaxforge("data", "clean", f"--data_dir={data_dir}", cwd=tmp_path).returncode == 0
  assert not os.path.exists(used) and not os.path.exists(recent)
  assert not (data_dir / "text_file").exists()  # no empty config or dataset folders left behind


@pytest.mark.slow  # subprocess CLI runs
def test_data_command_mistakes_are_one_line(tmp_path):
  for args, shown in ((("data",), "usage: flaxforge data list"), (("data", "show"), "usage: flaxforge data list"),
                      (("data", "clean", "--older_than=-1"), "--older_than=-1.0 is out of range")):
    proc = flaxforge(*args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and shown in proc.stderr, proc.stderr
