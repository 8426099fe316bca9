"""Text classification as a user runs it: train from the command line, predict, and the eval report.

The CSV run uses a file made here; the 20 Newsgroups runs use the real archive (FLAXFORGE_DATASETS).
"""
import csv
import json
import random

import pytest

from conftest import run_module

pytestmark = pytest.mark.slow  # subprocess CLI runs on real data


_run = run_module


def _last_json(proc):
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_own_csv_trains_predicts_and_reports(tmp_path):
  rng = random.Random(0)
  cues = {"sports": "goal match team coach league".split(), "cooking": "oven recipe flour bake sauce".split(),
          "travel": "flight hotel beach passport train".split()}
  with open(tmp_path / "notes.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["body", "topic"])
    for _ in range(300):
      topic = rng.choice(sorted(cues))
      writer.writerow([" ".join(rng.choices(cues[topic], k=4) + rng.choices("the a and of to".split(), k=6)), topic])
  workdir = tmp_path / "run"
  common = [f"--workdir={workdir}", "--config.data.path=" + str(tmp_path / "notes.csv"),
            "--config.data.text_column=body", "--config.data.label_column=topic",
            f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.train.num_epochs=4",
            "--config.train.progress_bar=false"]
  trained = _last_json(_run("flaxforge.launch.train", "--config=launch/configs/text_csv.py", *common))
  assert trained["accuracy"] > 0.9
  out = _run("flaxforge.launch.predict", f"--workdir={workdir}", "--json", "--top_k=2", "bake the flour in the oven",
             "the coach said the team played the match well")
  rows = [json.loads(line) for line in out.stdout.strip().splitlines()]
  assert [r["top"][0]["label"] for r in rows] == ["cooking", "sports"]
  assert all(len(r["top"]) == 2 and r["top"][0]["probability"] >= r["top"][1]["probability"] for r in rows)
  (tmp_path / "texts.txt").write_text("the flight landed and the hotel was by the beach\nthe coach of the team\n")
  out = _run("flaxforge.launch.predict", f"--workdir={workdir}", f"--input={tmp_path / 'texts.txt'}", "--json")
  rows = [json.loads(line) for line in out.stdout.strip().splitlines()]
  assert [(r["text"], r["top"][0]["label"]) for r in rows] == [
      ("the flight landed and the hotel was by the beach", "travel"), ("the coach of the team", "sports")]
  evaluated = _last_json(_run("flaxforge.launch.eval", f"--workdir={workdir}"))
  assert evaluated["accuracy"] == trained["accuracy"]
  report = json.loads((workdir / "report" / f"test_step{evaluated['step']}.json").read_text())
  assert sorted(report["per_class"]) == ["cooking", "sports", "travel"] and "macro_f1" in report
  assert (workdir / "report" / f"test_step{evaluated['step']}_confusion.png").stat().st_size > 1000


def test_seed_text_cnn_on_real_20_newsgroups(real_datasets, tmp_path):
  proc = _run("flaxforge.launch.train", "--config=launch/configs/text_cnn_20ng.py", f"--workdir={tmp_path / 'run'}",
              f"--config.data.manual_dir={real_datasets / '20newsgroups'}",
              f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.train.progress_bar=false")
  result = _last_json(proc)
  # Seed 0 measures 0.560 and eight seeds span 0.553-0.571 (BENCHMARKS.md), so 0.545 leaves room for another
  # CPU's rounding, while the regression the config guards against, Adam back at Keras's 1e-3 leaving the
  # embedding under-trained (0.476-0.530 over the same seeds), falls below it.
  assert result["accuracy"] >= 0.545, result


def test_better_config_on_real_20_newsgroups_and_predict(bow_20ng_run):
  """The session's text_bow_20ng run (conftest.py bow_20ng_run)."""
  workdir, result = bow_20ng_run.workdir, bow_20ng_run.result
  assert result["accuracy"] >= 0.85, result
  out = _run("flaxforge.launch.predict", f"--workdir={workdir}", "--json",
             "NASA launched the satellite into orbit on a rocket yesterday.",
             "The hockey playoff game went to overtime before the home team scored.")
  top = [json.loads(line)["top"][0]["label"] for line in out.stdout.strip().splitlines()]
  assert top == ["sci.space", "rec.sport.hockey"]


def test_bert_beats_the_seed_text_cnn_on_real_20_newsgroups(real_datasets, tmp_path):
  result = _last_json(_run("flaxforge.launch.train", "--config=launch/configs/bert_20ng.py", f"--workdir={tmp_path / 'run'}",
                           f"--config.data.manual_dir={real_datasets / '20newsgroups'}",
                           f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.train.progress_bar=false"))
  # The README claims 0.813 (benchmarks/results/accuracy_*.jsonl). 0.79 allows rounding on another CPU; a
  # model that stops attending (pooling noise) or a broken [CLS] pooling lands near the text CNN's 0.56.
  assert result["accuracy"] >= 0.79, result
