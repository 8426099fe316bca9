"""A work directory is one run: a rerun may change only how long and how visibly it trains; other settings
or other data are refused in one line with nothing overwritten; eval scores the split the run trained on."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import csv_run
from conftest import cli_env
from flaxforge import data as data_lib
from flaxforge.core.errors import UserError
from flaxforge.trainer import evaluate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("identity")
  path = csv_run.write_topics(tmp / "topics.csv")
  cfg = csv_run.config(tmp, path)
  results = csv_run.train(cfg, tmp / "run")
  return tmp, path, cfg, results


def _snapshot(workdir):
  return {name: (workdir / name).read_bytes() for name in ("config.json", "data.json", "info.json",
                                                            "assets/text_encoder.json", "metrics.jsonl")}


@pytest.mark.slow  # a whole training
@pytest.mark.parametrize("field,value,said", [
    ("data.lowercase", False, "data.lowercase: true -> false"),  # case 1: re-maps the vocabulary
    ("optimizer.learning_rate", 0.5, "optimizer.learning_rate: 0.01 -> 0.5"),
    ("data.batch_size", 32, "data.batch_size: 16 -> 32 (the data position is a step number)"),  # case 5
])
def test_a_changed_run_defining_field_is_refused_and_nothing_is_overwritten(trained, tmp_path, field, value, said):
  tmp, path, cfg, _ = trained
  workdir = tmp_path / "run"
  shutil.copytree(tmp / "run", workdir)
  before = _snapshot(workdir)
  with pytest.raises(UserError) as e:
    csv_run.train(csv_run.config(tmp, path, **{field: value, "train.num_steps": 30}), workdir)
  message = str(e.value)
  assert said in message and "new --workdir" in message and "\n" not in message
  assert _snapshot(workdir) == before


@pytest.mark.slow  # a whole training
def test_changed_data_is_refused_naming_the_file(trained, tmp_path):
  tmp, _, cfg, _ = trained
  shutil.copytree(tmp / "run", tmp_path / "run")
  path = shutil.copy(cfg.data.path, tmp_path / "topics.csv")
  with open(path, "a", encoding="utf-8") as f:
    f.write("moon rocket star,space\n")  # one appended row
  before, prepared = _snapshot(tmp_path / "run"), sorted((tmp / "tfds").rglob("*"))
  with pytest.raises(UserError, match=r"other data \(the content of .*topics.csv \(sha256 \w+ -> \w+\)"):
    csv_run.train(csv_run.config(tmp, path), tmp_path / "run")
  assert _snapshot(tmp_path / "run") == before
  assert sorted((tmp / "tfds").rglob("*")) == prepared  # refused before the edited file was prepared


@pytest.mark.slow  # a whole training
def test_a_longer_run_resumes_and_records_the_change(trained, tmp_path):
  tmp, path, _, _ = trained
  shutil.copytree(tmp / "run", tmp_path / "run")
  csv_run.train(csv_run.config(tmp, path, **{"train.num_steps": 30, "train.log_every": 5}), tmp_path / "run")
  records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  (change,) = [r for r in records if r["split"] == "config_change"]
  assert change["step"] == 20 and change["changes"] == {"train.num_steps": [20, 30], "train.log_every": [10, 5]}
  assert max(r["step"] for r in records) == 30


@pytest.mark.slow  # a whole training
def test_eval_scores_the_recorded_split_after_the_file_changes(trained, tmp_path):
  """Case 2: rows with a new class appended to the CSV change nothing for eval of the finished run, even
  after the changed file was prepared beside it (by a new run in another --workdir, as the refusal advises)."""
  tmp, path, cfg, results = trained
  shutil.copytree(tmp / "run", tmp_path / "run")
  shutil.copy(path, tmp_path / "saved.csv")
  try:
    csv_run.write_topics(path, n=200, topics=("space", "food", "sport"), seed=1)
    with pytest.raises(UserError, match="holds a run trained on other data"):
      csv_run.train(cfg, tmp_path / "run")
    data_lib.load(cfg.data)  # prepares the changed file in the same data directory
    scored = evaluate.evaluate_workdir(str(tmp_path / "run"))
  finally:
    shutil.copy(tmp_path / "saved.csv", path)
  assert scored["step"] == 20
  assert scored["accuracy"] == pytest.approx(results["accuracy"]) and scored["loss"] == pytest.approx(results["loss"])


@pytest.mark.slow  # a whole training
def test_eval_names_moved_data_and_the_flag_that_finds_it(trained, tmp_path):
  """The prepared copy moved to another data directory and the file edited since: nothing to rebuild it from."""
  tmp, path, _, results = trained
  shutil.copytree(tmp / "run", tmp_path / "run")
  shutil.copytree(tmp / "tfds", tmp_path / "moved")
  for name in ("data.json", "config.json"):
    record = tmp_path / "run" / name
    record.write_text(record.read_text().replace(str(tmp / "tfds"), str(tmp_path / "gone")))
  shutil.copy(path, tmp_path / "saved.csv")
  try:
    csv_run.write_topics(path, n=200, seed=3)
    with pytest.raises(UserError, match=r"not in .*gone.* \(moved or deleted\) and its source has changed; "
                                        r"pass --data_dir=FOLDER that holds text_file/topics_"):
      evaluate.evaluate_workdir(str(tmp_path / "run"))
    scored = evaluate.evaluate_workdir(str(tmp_path / "run"), data_dir=str(tmp_path / "moved"))
  finally:
    shutil.copy(tmp_path / "saved.csv", path)
  assert scored["accuracy"] == pytest.approx(results["accuracy"])
  shutil.rmtree(tmp_path / "gone")  # a deleted copy of an unchanged file is rebuilt, identical, and used
  assert evaluate.evaluate_workdir(str(tmp_path / "run"))["accuracy"] == pytest.approx(results["accuracy"])


@pytest.mark.slow  # a whole training
def test_relative_paths_are_resolved_when_the_run_starts(trained, tmp_path, monkeypatch):
  tmp, path, _, _ = trained
  shutil.copy(path, tmp_path / "topics.csv")
  monkeypatch.chdir(tmp_path)
  cfg = csv_run.config(tmp_path, "topics.csv", **{"data.data_dir": "tfds", "train.num_steps": 10})
  csv_run.train(cfg, "run")
  saved = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
  assert saved["path"] == str(tmp_path / "topics.csv") and saved["data_dir"] == str(tmp_path / "tfds")
  scored = evaluate.evaluate_workdir(str(tmp_path / "run"))
  (tmp_path / "elsewhere").mkdir()
  monkeypatch.chdir(tmp_path / "elsewhere")  # another folder, with a same-named file that must not be scored
  csv_run.write_topics("topics.csv", topics=("sport", "food"), seed=2)
  assert evaluate.evaluate_workdir(str(tmp_path / "run")) == scored


def test_every_path_field_expands_home_and_variables(tmp_path, monkeypatch):
  """`--config.model.pretrained=~/models/MiniLM` reached the model loader as given ('cannot read
  ~/models/...'), while tokenizer_path, which defaults to it, was expanded."""
  from flaxforge.launch.configs import finetune_text  # pylint: disable=g-import-not-at-top
  from flaxforge.trainer import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.setenv("RUNS", str(tmp_path / "runs"))
  monkeypatch.chdir(tmp_path)
  cfg = finetune_text.get_config()
  cfg.model.pretrained, cfg.train.init_from, cfg.data.path = "~/models/MiniLM", "$RUNS/old", "$RUNS/../topics.csv"
  run = workdir_lib.resolve("run")
  expanded, _ = workdir_lib.check_config(run, cfg)
  home = tmp_path / "home"
  assert (expanded.model.pretrained, expanded.data.tokenizer_path) == (f"{home}/models/MiniLM",) * 2
  assert (expanded.train.init_from, expanded.data.path) == (f"{tmp_path}/runs/old", f"{tmp_path}/topics.csv")
  (run / "checkpoints" / "10").mkdir(parents=True)  # a run that recorded its paths as given is the same run
  (run / "config.json").write_text(json.dumps(json.loads(cfg.to_json_best_effort())))
  assert workdir_lib.check_config(run, cfg)[0].model.pretrained == f"{home}/models/MiniLM"
  cfg.model.pretrained = "~/models/bert"
  with pytest.raises(UserError, match=f'model.pretrained: "{home}/models/MiniLM" -> "{home}/models/bert"'):
    workdir_lib.check_config(run, cfg)


def _train(workdir, *flags):
  return subprocess.run([sys.executable, "-m", "flaxforge.launch.train", f"--workdir={workdir}", *flags],
                        cwd=REPO, env=cli_env(), capture_output=True, text=True)


@pytest.mark.slow  # subprocess CLI runs
def test_a_rerun_without_config_resumes_with_the_stored_one(tmp_path):
  first = _train(tmp_path, "--config=launch/configs/tiny.py", "--config.train.num_steps=20")
  assert first.returncode == 0, first.stderr[-2000:]
  again = _train(tmp_path, "--config.train.num_steps=30")  # no --config: tiny.py's fields, 10 more steps
  assert again.returncode == 0, again.stderr[-2000:]
  assert "resumed from the checkpoint at step 20" in again.stdout
  assert json.loads((tmp_path / "config.json").read_text())["model"]["hidden"] == [64]  # tiny.py's, not default's


@pytest.mark.slow  # subprocess CLI runs
def test_a_rerun_without_config_checks_overrides_against_the_runs_own_fields(trained, tmp_path):
  """data.seq_len is a field of text_csv, not of the default config: without --config it is the run's
  field, so changing it is refused as a change of the run (not as an unknown field), and --help lists it."""
  tmp, _, _, _ = trained
  shutil.copytree(tmp / "run", tmp_path / "run")
  before = _snapshot(tmp_path / "run")
  refused = _train(tmp_path / "run", "--config.data.seq_len=32")
  assert refused.returncode == 2, refused.stderr[-2000:]
  assert "data.seq_len: 16 -> 32" in refused.stderr and "unknown config field" not in refused.stderr
  assert _snapshot(tmp_path / "run") == before
  shown = _train(tmp_path / "run", "--help")
  assert shown.returncode == 0 and "text_column = 'text'" in shown.stdout
  assert f"config fields (the run's own: {tmp_path / 'run'}/config.json)" in shown.stdout
  stored = tmp_path / "run" / "config.json"
  stored.write_text(stored.read_text()[:40])  # damaged (a disk filled mid-copy, say): one line, nothing lost
  damaged = _snapshot(tmp_path / "run")
  broken = _train(tmp_path / "run")
  assert broken.returncode == 2 and "Traceback" not in broken.stderr, broken.stderr[-2000:]
  assert f"error: {stored} is not JSON" in broken.stderr.strip().splitlines()[-1]
  assert _snapshot(tmp_path / "run") == damaged
