"""The README's accuracy figures, recorded: each config whose test accuracy the README quotes, trained through
`python -m flaxforge.launch.train` (benchmarks/runner.py `run`), and TF-IDF + LinearSVC (scikit-learn) on the
same 20 Newsgroups "bydate" test split. One JSON line per run in benchmarks/results/accuracy_<date>.jsonl.

  PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy [--manual_dir=/work/shared/datasets/20newsgroups] \
      [--only=tfidf,text_bow_20ng,bert_20ng,text_cnn_20ng,penguins]

`penguins`: `tabular_csv` on the Palmer penguins table (examples/penguins_table/penguins.csv, species from
every other column) with five split seeds: each a different 69-row test split, so the spread says how much
one split's figure means.
"""
import argparse
import datetime
import json
import os
import pathlib
import sys
import tempfile
import time

from benchmarks import records, runner, workloads
from flaxforge.data import newsgroups

PENGUINS = os.path.join(workloads.REPO, "examples", "penguins_table", "penguins.csv")
RUNS = [  # (name, config, flags): the text CNN's seeds 0 / 1 / 2 (README: 0.560 / 0.556 / 0.569), 0.857, 0.813
    ("text_cnn_20ng", "launch/configs/text_cnn_20ng.py", {"seed": 0, "data.seed": 0}),
    ("text_cnn_20ng", "launch/configs/text_cnn_20ng.py", {"seed": 1, "data.seed": 1}),
    ("text_cnn_20ng", "launch/configs/text_cnn_20ng.py", {"seed": 2, "data.seed": 2}),
    ("text_bow_20ng", "launch/configs/text_bow_20ng.py", {"seed": 0, "data.seed": 0}),
    ("bert_20ng", "launch/configs/bert_20ng.py", {"seed": 0, "data.seed": 0}),
] + [("penguins", "launch/configs/tabular_csv.py",
      {"data.path": PENGUINS, "data.label_column": "species", "data.split_seed": s}) for s in range(5)]


def trainer(config: str, flags: dict, manual_dir: str, tfds_dir: str, workdir: pathlib.Path) -> dict:
  data = {"data.manual_dir": manual_dir} if "20ng" in config else {}
  cmd = [sys.executable, "-m", "flaxforge.launch.train", f"--config={config}", f"--workdir={workdir}",
         "--config.train.progress_bar=false", f"--config.data.data_dir={tfds_dir}",
         *[f"--config.{k}={v}" for k, v in {**data, **flags}.items()]]
  start = time.time()
  out, _, foreign = runner.run(cmd, timeout=3600)  # a shared machine can slow BERT's 3 minutes many times
  return {"command": " ".join(cmd[1:]), "seconds": round(time.time() - start, 1), "foreign": round(foreign, 3),
          "accuracy": runner.json_line(out)["accuracy"]}


def tfidf_svm(manual_dir: str) -> dict:
  """TF-IDF (sublinear tf, word 1-2 grams) + LinearSVC trained on the whole bydate train split, whole texts."""
  from sklearn.feature_extraction.text import TfidfVectorizer  # pylint: disable=g-import-not-at-top
  from sklearn.svm import LinearSVC  # pylint: disable=g-import-not-at-top
  archive = os.path.join(manual_dir, "20news-bydate.tar.gz")
  start = time.time()
  (train_x, train_y), (test_x, test_y) = [tuple(zip(*newsgroups.documents(archive, s))) for s in ("train", "test")]
  vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
  model = LinearSVC(C=1.0).fit(vectorizer.fit_transform(train_x), train_y)
  accuracy = float((model.predict(vectorizer.transform(test_x)) == list(test_y)).mean())
  return {"command": "sklearn TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2) + LinearSVC(C=1)",
          "seconds": round(time.time() - start, 1), "accuracy": accuracy}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--manual_dir", default=workloads.NG_DIR)
  p.add_argument("--tfds_dir", default=workloads.TFDS_DIR)
  p.add_argument("--only", default="", help="comma-separated: tfidf and config names (default: all)")
  a = p.parse_args()
  out = pathlib.Path(workloads.REPO) / "benchmarks" / "results" / f"accuracy_{datetime.date.today()}.jsonl"
  with tempfile.TemporaryDirectory() as tmp:
    wanted = lambda name: not a.only or name in a.only.split(",")
    runs = [lambda: tfidf_svm(a.manual_dir)] if wanted("tfidf") else []
    runs += [lambda c=c, f=f, i=i: trainer(c, f, a.manual_dir, a.tfds_dir, pathlib.Path(tmp) / str(i))
             for i, (name, c, f) in enumerate(RUNS) if wanted(name)]
    for measure in runs:
      machine = records.machine()  # the load average as the run starts
      result = {**machine, **measure()}
      print(json.dumps(result), flush=True)
      records.append(out, [result])


if __name__ == "__main__":
  main()
