"""--config.data.validation_fraction=0: no validation split, so every non-test row trains (the refit after
choosing settings on validation); what needs a validation split says so in one line; a positive fraction
too small to give the split a row is still refused; the fraction is part of the run's identity."""
import contextlib
import gzip
import io
import json
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import csv_run
from conftest import cli_env
from flaxforge.data import fields as data_fields
from flaxforge.core.errors import UserError
from flaxforge.data import fashion_mnist, image_folder, lm_text, newsgroups, splits, tabular, text_files
from flaxforge.launch.configs import text_csv
from flaxforge.trainer import evaluate, fields

FLAXFORGE = str(pathlib.Path(sys.executable).parent / "flaxforge")
ROWS = 160  # csv_run.write_topics: 80 rows of each of 2 topics


@pytest.fixture(scope="module")
def refit(tmp_path_factory):
  """A tiny text-CSV run with validation_fraction=0, trained in this process; also its stdout."""
  tmp = tmp_path_factory.mktemp("refit")
  path = csv_run.write_topics(tmp / "topics.csv", n=ROWS)
  cfg = csv_run.config(tmp, path, **{"data.validation_fraction": 0.0})
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    results = csv_run.train(cfg, tmp / "run")
  return tmp, path, cfg, results, out.getvalue()


@pytest.mark.slow  # a whole training
def test_a_refit_trains_on_every_non_test_row_and_reports_test(refit):
  tmp, _, _, results, stdout = refit
  run = tmp / "run"
  splits = json.loads((run / "data.json").read_text())["splits"]
  n_test = 2 * round(0.1 * ROWS / 2)  # stratified: 10% of each topic
  assert splits == {"train": ROWS - n_test, "test": n_test}
  records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
  kinds = {r["split"] for r in records}
  assert "validation" not in kinds and "train" in kinds
  tested = [r for r in records if r["split"] == "test"]
  assert len(tested) == 1 and tested[0]["checkpoint_step"] == 20 and tested[0]["accuracy"] == results["accuracy"]
  assert "summary: no validation split" in stdout and "checkpoints kept: 10, 20" in stdout, stdout
  assert "test: " in stdout and "validation:" not in stdout
  # Eval reopens the recorded copy (train and test only) and scores the same test split.
  again = evaluate.evaluate_workdir(str(run), split="test")
  assert again["step"] == 20 and again["accuracy"] == pytest.approx(results["accuracy"])


def _one_error_line(proc) -> str:
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
  return lines[0]


def _flaxforge(*args, cwd):
  return subprocess.run([FLAXFORGE, *args], cwd=cwd, env=cli_env(), capture_output=True, text=True)


@pytest.mark.slow  # subprocess CLI runs
def test_eval_of_the_validation_split_or_the_best_checkpoint_is_one_line(refit):
  tmp = refit[0]
  line = _one_error_line(_flaxforge("eval", f"--workdir={tmp / 'run'}", "--split=validation", cwd=tmp))
  assert "does not have" in line and "validation_fraction=0" in line and "its splits: train, test" in line, line
  assert "--split=test" in line, line
  line = _one_error_line(_flaxforge("eval", f"--workdir={tmp / 'run'}", "--best", cwd=tmp))
  assert "--best needs the validation split" in line and "validation_fraction=0" in line, line
  assert "drop --best" in line, line


@pytest.mark.slow  # a whole training
def test_resume_refuses_another_fraction_and_accepts_the_same(refit):
  tmp, path, cfg, results, _ = refit
  with pytest.raises(UserError) as e:
    csv_run.train(csv_run.config(tmp, path, **{"data.validation_fraction": 0.1}), tmp / "run")
  assert "data.validation_fraction: 0.0 -> 0.1" in str(e.value) and "\n" not in str(e.value)
  assert csv_run.train(cfg, tmp / "run")["accuracy"] == pytest.approx(results["accuracy"])  # same run: re-tested


@pytest.mark.slow  # a whole training
def test_early_stopping_without_a_validation_split_is_refused(refit, tmp_path):
  tmp, path = refit[:2]
  cfg = csv_run.config(tmp, path, **{"data.validation_fraction": 0.0})
  cfg.train.early_stopping.metric = "accuracy"
  with pytest.raises(UserError, match="early stopping watches the validation split, which this dataset lacks"):
    csv_run.train(cfg, tmp_path / "run")


def test_the_field_allows_zero_and_says_what_it_means():
  declared = data_fields.Validation.declared()["validation_fraction"]
  allowed = declared.range
  assert allowed.allows(0) and not allowed.allows(1) and not allowed.allows(-0.1)
  assert "0 = no validation split" in declared.description
  # test_fraction has no such meaning (a run without a test split is not offered): 0 is outside its range.
  config = text_csv.get_config()
  config.data.test_fraction = 0.0
  with pytest.raises(UserError, match=r"config.data.test_fraction = 0.0 is out of range: allowed is number > 0"):
    fields.validate(config)


# Each builder with validation_fraction: 0 writes no validation split; a positive fraction that gives the
# split no row is refused in one line naming the fraction (and the 0 alternative).

def _sizes(ds) -> dict:
  return {name: len(rows) for name, rows in ds.splits.items()}


def _refused(load, cfg) -> str:
  with pytest.raises(UserError) as e:
    load(cfg)
  message = str(e.value)
  assert "the validation split is empty" in message and "--config.data.validation_fraction" in message, message
  assert "set it to 0" in message and "\n" not in message
  return message


def test_text_file(tmp_path):
  path = csv_run.write_topics(tmp_path / "t.csv", n=40)
  cfg = {"path": str(path), "data_dir": str(tmp_path / "tfds"), "seq_len": 8}
  assert _sizes(text_files.load({**cfg, "validation_fraction": 0})) == {"train": 36, "test": 4}
  _refused(text_files.load, {**cfg, "validation_fraction": 0.01})  # 20 rows a topic: round(0.2) = 0
  # A split column without validation rows: none is held out of its train rows either.
  split = tmp_path / "s.csv"
  split.write_text("text,label,part\n" + "".join(f"w{i} {'ab'[i % 2]},{'ab'[i % 2]},{'test' if i < 6 else 'train'}\n"
                                                 for i in range(30)))
  ds = text_files.load({**cfg, "path": str(split), "split_column": "part", "validation_fraction": 0})
  assert _sizes(ds) == {"train": 24, "test": 6}
  # A split column with validation rows: with 0 they train too; the column's test rows stay the test split.
  column = tmp_path / "v.csv"
  column.write_text("text,label,part\n" + "".join(
      f"w{i} {'ab'[i % 2]},{'ab'[i % 2]},{'test' if i < 6 else 'validation' if i < 12 else 'train'}\n"
      for i in range(30)))
  ds = text_files.load({**cfg, "path": str(column), "split_column": "part", "validation_fraction": 0})
  assert _sizes(ds) == {"train": 24, "test": 6}
  assert _sizes(text_files.load({**cfg, "path": str(column), "split_column": "part"})) == \
      {"train": 18, "validation": 6, "test": 6}


def test_newsgroups(tmp_path):
  from test_newsgroups import TRAIN_PER_GROUP, make_archive  # pylint: disable=g-import-not-at-top
  make_archive(tmp_path / "manual")
  cfg = {"data_dir": str(tmp_path / "tfds"), "manual_dir": str(tmp_path / "manual"), "seq_len": 12}
  ds = newsgroups.load({**cfg, "validation_fraction": 0})
  assert _sizes(ds) == {"train": 3 * TRAIN_PER_GROUP, "test": 10}
  message = _refused(newsgroups.load, {**cfg, "validation_fraction": 0.01})  # was TFDS' "No examples were yielded."
  assert message.startswith("20 Newsgroups: ")


def test_fashion_mnist(tmp_path):
  folder = tmp_path / "idx"
  folder.mkdir()
  for split, n in (("train", 100), ("test", 30)):
    images, labels = fashion_mnist.FILES[split]
    for name, array in ((images, np.zeros((n, 28, 28), np.uint8)), (labels, np.arange(n, dtype=np.uint8) % 10)):
      header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
      (folder / f"{name}.gz").write_bytes(gzip.compress(header + array.tobytes()))
  cfg = {"manual_dir": str(folder), "data_dir": str(tmp_path / "tfds")}
  assert _sizes(fashion_mnist.load({**cfg, "validation_fraction": 0})) == {"train": 100, "test": 30}
  _refused(fashion_mnist.load, {**cfg, "validation_fraction": 0.01})


def test_image_folder(tmp_path):
  for c, color in enumerate(((200, 0, 0), (0, 0, 200))):
    (tmp_path / "photos" / f"c{c}").mkdir(parents=True)
    for i in range(10):
      Image.fromarray(np.full((8, 8, 3), color, np.uint8)).save(tmp_path / "photos" / f"c{c}" / f"{i}.png")
  cfg = {"path": str(tmp_path / "photos"), "data_dir": str(tmp_path / "tfds"), "image_size": (8, 8)}
  ds = image_folder.load({**cfg, "validation_fraction": 0, "test_fraction": 0.2})
  assert _sizes(ds) == {"train": 16, "test": 4}
  _refused(image_folder.load, {**cfg, "validation_fraction": 0.01, "test_fraction": 0.2})


def test_tabular(tmp_path):
  rng = np.random.default_rng(0)
  pd.DataFrame({"x": rng.normal(size=40), "label": ["a", "b"] * 20}).to_csv(tmp_path / "t.csv", index=False)
  cfg = {"path": str(tmp_path / "t.csv"), "data_dir": str(tmp_path / "tfds")}
  assert _sizes(tabular.load({**cfg, "validation_fraction": 0})) == {"train": 36, "test": 4}
  _refused(tabular.load, {**cfg, "validation_fraction": 0.01})


def test_lm_text(tmp_path):
  corpus = tmp_path / "corpus.txt"
  corpus.write_bytes(bytes(range(256)) * 40)  # 10,240 bytes
  ds = lm_text.load({"path": str(corpus), "seq_len": 16, "validation_fraction": 0, "test_fraction": 0.2})
  assert [len(ds.splits[s].stream) for s in ds.splits] == [8192, 2048] and list(ds.splits) == ["train", "test"]
  rows = tmp_path / "sft.jsonl"
  rows.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": " a"}) + "\n" for i in range(20)))
  ds = lm_text.load({"path": str(rows), "seq_len": 8, "validation_fraction": 0, "test_fraction": 0.1})
  assert _sizes(ds) == {"train": 18, "test": 2}


@pytest.mark.slow  # whole trainings
def test_a_refit_tests_on_the_rows_the_chosen_settings_were_tested_on(tmp_path):
  """Without a split column the test rows are drawn before the validation rows: the refit (fraction 0) is
  tested on the same rows as the run that chose its settings, so the two test scores compare."""
  labels = np.array([0, 1, 1] * 20)
  chosen, refit = (text_files.split_rows(labels, None, f, 0.1, seed=3, where="t.csv") for f in (0.2, 0))
  np.testing.assert_array_equal(chosen["test"], refit["test"])
  np.testing.assert_array_equal(refit["train"], np.sort(np.concatenate([chosen["train"], chosen["validation"]])))
  for c in range(2):  # each image its own shade, so the test images say which rows they are
    (tmp_path / "photos" / f"c{c}").mkdir(parents=True)
    for i in range(20):
      Image.fromarray(np.full((4, 4, 3), 10 * i + c, np.uint8)).save(tmp_path / "photos" / f"c{c}" / f"{i}.png")
  cfg = {"path": str(tmp_path / "photos"), "data_dir": str(tmp_path / "tfds"), "image_size": (4, 4)}
  shades = lambda ds: sorted(int(ds.splits["test"][i]["inputs"][0, 0, 0]) for i in range(len(ds.splits["test"])))
  assert shades(image_folder.load(cfg)) == shades(image_folder.load({**cfg, "validation_fraction": 0}))
  pd.DataFrame({"x": np.arange(40.0), "label": ["a", "b"] * 20}).to_csv(tmp_path / "t.csv", index=False)
  cfg = {"path": str(tmp_path / "t.csv"), "data_dir": str(tmp_path / "tfds"), "normalize": "none"}
  xs = lambda ds: sorted(float(ds.splits["test"][i]["inputs"][0]) for i in range(len(ds.splits["test"])))
  assert xs(tabular.load(cfg)) == xs(tabular.load({**cfg, "validation_fraction": 0}))


def test_a_positive_fraction_keeps_its_validation_split():
  parts = {"train": np.arange(3), "validation": np.zeros(0, np.int64)}
  assert list(splits.without_validation(parts, 0)) == ["train"]
  assert list(splits.without_validation(parts, 0.05)) == ["train", "validation"]  # then refused as empty
  with pytest.raises(UserError, match=r"^x: the validation split is empty \(3 rows\); add rows or raise"):
    splits.refuse_empty(splits.without_validation(parts, 0.05), "x", "3 rows", "add rows")
