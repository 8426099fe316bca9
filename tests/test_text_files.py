"""data/text_files.py: the user's CSV/TSV/JSONL files, splits, caching, and one-line errors for bad input."""
import csv
import json
import os

import numpy as np
import pytest

from flaxforge.data import prepared, records, splits, text, text_files
from flaxforge.core.errors import UserError


def write_csv(path, rows, header=("text", "label")):
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  return path


def reviews(n=200):
  rng = np.random.default_rng(0)
  words = {"pos": "great fine lovely", "neg": "awful bad, poor", "meh": "okay so-so"}
  labels = [["pos", "neg", "meh"][i] for i in rng.choice(3, n, p=[0.5, 0.3, 0.2])]
  return [(f"Review {i}: {words[y]}, \"quoted\", multi\nline", y) for i, y in enumerate(labels)]


def config(tmp_path, path, **overrides):
  return {"data_dir": str(tmp_path / "tfds"), "path": str(path), "seq_len": 10, **overrides}


def test_csv_splits_labels_and_encoding(tmp_path):
  rows = reviews()
  ds = text_files.load(config(tmp_path, write_csv(tmp_path / "reviews.csv", rows)))
  assert ds.info["label_names"] == ["meh", "neg", "pos"] and ds.info["num_classes"] == 3
  assert ds.assets["labels"] == ["meh", "neg", "pos"] and ds.info["seq_len"] == 10
  counts = {name: np.bincount([src[i]["label"] for i in range(len(src))], minlength=3)
            for name, src in ds.splits.items()}
  total = np.bincount(splits.label_encoder([y for _, y in rows]).encode([y for _, y in rows]))
  np.testing.assert_array_equal(sum(counts.values()), total)
  np.testing.assert_array_equal(counts["validation"], np.round(total * 0.1))  # stratified
  np.testing.assert_array_equal(counts["test"], np.round(total * 0.1))
  encoder = text.TextEncoder.from_json(ds.assets["text_encoder"])
  ex = ds.splits["train"][0]
  assert ex["inputs"].dtype == np.int32 and ex["inputs"].shape == (10,)
  assert ex["inputs"].tolist() in encoder.encode([t for t, _ in rows]).tolist()


def test_prepared_copies_keyed_by_content_and_unused_earlier_ones_removed(tmp_path, monkeypatch, capfd):
  path = write_csv(tmp_path / "reviews.csv", reviews())
  first = text_files.load(config(tmp_path, path))
  assert "Downloading" not in capfd.readouterr().out  # no TFDS download message for a local file
  calls = []
  read_table = text_files.read_table
  monkeypatch.setattr(text_files, "read_table", lambda *a: calls.append(a) or read_table(*a))
  stat = os.stat(path)
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same content: reused
  assert text_files.load(config(tmp_path, path)).assets == first.assets and not calls
  run = tmp_path / "run"  # a run trained on the first content keeps that copy
  run.mkdir()
  (run / records.RECORD_FILE).write_text(json.dumps({"prepared_dir": first.prepared_dir}))
  prepared.note_run(first.prepared_dir, run)
  write_csv(path, reviews(210))  # new content: a new copy; the first stays for the run trained on it
  second = text_files.load(config(tmp_path, path))
  assert len(calls) == 1 and os.path.exists(first.prepared_dir) and os.path.exists(second.prepared_dir)
  (run / records.RECORD_FILE).unlink()  # that run is gone: the next content removes both unused copies
  write_csv(path, reviews(220))
  third = text_files.load(config(tmp_path, path))
  assert len(calls) == 2 and os.path.exists(third.prepared_dir)
  assert not os.path.exists(first.prepared_dir) and not os.path.exists(second.prepared_dir)
  text_files.load(config(tmp_path, path, num_words=50))  # another option, another prepared copy
  assert len(calls) == 3 and os.path.exists(third.prepared_dir)


def test_split_column_and_missing_parts_held_out(tmp_path):
  rows = [(f"{y} text {i}", y, "test" if i < 6 else "TRAIN") for i, y in enumerate(["a", "b"] * 30)]
  path = write_csv(tmp_path / "split.csv", rows, header=("body", "y", "part"))
  ds = text_files.load(config(tmp_path, path, text_column="body", label_column="y", split_column="part",
                              validation_fraction=0.2))
  assert {k: len(v) for k, v in ds.splits.items()} == {"train": 44, "validation": 10, "test": 6}


def test_jsonl_and_tsv(tmp_path):
  path = tmp_path / "data.jsonl"
  rows = [json.dumps({"text": f"doc {i}", "label": i % 3 * 5, "x": None}) for i in range(60)]
  path.write_text("\n".join(rows) + "\n\n")
  ds = text_files.load(config(tmp_path, path))
  assert ds.info["label_names"] == ["0", "5", "10"]
  assert sum(len(s) for s in ds.splits.values()) == 60
  tsv = tmp_path / "data.tsv"
  tsv.write_text("label\ttext\n" + "".join(f"{i % 2}\tword, {i}\n" for i in range(40)))
  texts, labels, splits, _ = text_files.read_table(tsv, "text", "label")
  assert texts[3] == "word, 3" and labels[:2] == ["0", "1"] and splits is None


@pytest.mark.parametrize("content,columns,message", [
    ("text,label\na,1\nb,2\n" + "c,1\n" * 13 + "d,2,extra\n", ("text", "label"),
     "bad.csv row 17: expected 2 columns, found 3"),
    ("text,label\na,1\n", ("txt", "label"),
     "column 'txt' not found in bad.csv; columns are: text, label; pass --config.data.text_column=..."),
    ("text,label\na,1\n", ("text", "class"), "pass --config.data.label_column="),
    ("", ("text", "label"), "bad.csv is empty"),
    ("text,label\n", ("text", "label"), "bad.csv has no data rows"),
    ("text,label\na,1\nb,\n", ("text", "label"), "bad.csv row 3: missing or empty 'label'"),
    ('text,label\n"never closed,1\n', ("text", "label"), "bad.csv row 2: unreadable CSV"),
])
def test_csv_errors_name_the_problem_and_row(tmp_path, content, columns, message):
  path = tmp_path / "bad.csv"
  path.write_text(content)
  with pytest.raises(UserError) as e:
    text_files.read_table(path, *columns)
  assert message in str(e.value) and "\n" not in str(e.value)


def test_other_bad_inputs(tmp_path):
  bad = tmp_path / "bad.csv"
  bad.write_bytes(b"text,label\nok,1\ncaf\xe9,2\n")
  with pytest.raises(UserError, match="bad.csv row 3: not UTF-8"):
    text_files.read_table(bad, "text", "label")
  jsonl = tmp_path / "bad.jsonl"
  jsonl.write_text('{"text": "a", "label": 1}\n{"text": "b"\n')
  with pytest.raises(UserError, match="bad.jsonl row 2: not valid JSON"):
    text_files.read_table(jsonl, "text", "label")
  jsonl.write_text('{"text": "a", "label": 1}\n["a", 1]\n')
  with pytest.raises(UserError, match="row 2: expected a JSON object"):
    text_files.read_table(jsonl, "text", "label")
  jsonl.write_text('{"text": "a", "label": 1}\n{"body": "b", "label": 2}\n')
  with pytest.raises(UserError, match="row 2: field 'text' not found; fields are: body, label"):
    text_files.read_table(jsonl, "text", "label")
  split = write_csv(tmp_path / "s.csv", [("a", "1", "train"), ("b", "2", "dev")], header=("text", "label", "s"))
  with pytest.raises(UserError, match="s.csv row 3: 's' is 'dev'; use one of: train, validation, test"):
    text_files.read_table(split, "text", "label", "s")
  with pytest.raises(UserError, match="unknown file type '.xlsx'"):
    text_files.read_table(tmp_path / "x.xlsx", "text", "label")


def test_load_errors(tmp_path):
  with pytest.raises(UserError, match="missing.csv not found; pass --config.data.path="):
    text_files.load(config(tmp_path, tmp_path / "missing.csv"))
  with pytest.raises(UserError, match="pass --config.data.path="):
    text_files.load(config(tmp_path, ""))
  one = write_csv(tmp_path / "one.csv", [(f"t{i}", "pos") for i in range(20)])
  with pytest.raises(UserError, match="one.csv: column 'label' has the single value 'pos'"):
    text_files.load(config(tmp_path, one))
  few = write_csv(tmp_path / "few.csv", [("a", "x"), ("b", "y"), ("c", "x")])
  with pytest.raises(UserError, match="few.csv: the validation split is empty"):
    text_files.load(config(tmp_path, few))


@pytest.mark.parametrize("name,content,message", [
    ("nulls.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": null}\n', "nulls.jsonl row 2: missing or empty 'label'"),
    ("nans.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": NaN}\n', "nans.jsonl row 2: missing or empty 'label'"),
    ("notext.jsonl", '{"text": null, "label": "x"}\n', "notext.jsonl row 1: missing or empty 'text'"),
    ("blank.csv", 'text,label\na,x\n"  ",y\n', "blank.csv row 3: missing or empty 'text'"),
])
def test_null_nan_and_empty_cells_are_refused_naming_the_row(tmp_path, name, content, message):
  """Case 6: no class named "null" or "NaN", no text "null"."""
  (tmp_path / name).write_text(content)
  with pytest.raises(UserError) as e:
    text_files.read_table(tmp_path / name, "text", "label")
  assert str(e.value).startswith(message) and "--config.data.bad_rows=drop" in str(e.value)


def test_bad_rows_can_be_dropped_and_are_reported(tmp_path):
  rows = [json.dumps({"text": f"doc {i} {'ab'[i % 2]}", "label": "ab"[i % 2]}) for i in range(60)]
  rows[3], rows[10] = '{"text": "x", "label": null}', '{"text": null, "label": "a"}'
  rows[20] = '{"text": "y", "label": NaN}'
  (tmp_path / "some_bad.jsonl").write_text("\n".join(rows))
  ds = text_files.load(config(tmp_path, tmp_path / "some_bad.jsonl", bad_rows="drop"))
  assert ds.info["label_names"] == ["a", "b"] and ds.report["dropped_rows"] == [4, 11, 21]  # JSONL lines
  assert sum(len(s) for s in ds.splits.values()) == 57


def test_a_csv_cell_over_128_kib_is_read(tmp_path):
  """Case 8: Python's csv field limit is not a property of the data."""
  big = "word " * 40000  # 200 KB
  path = write_csv(tmp_path / "big.csv", [(big, "a"), ("small", "b")])
  texts, labels, _, _ = text_files.read_table(path, "text", "label")
  assert texts[0] == big and labels == ["a", "b"]


def chinese_topics(path, n=300):
  """Two topics written as Chinese is, without spaces: sport and cooking sentences from shared words."""
  rng = np.random.default_rng(0)
  words = {"体育": "足球 比赛 球队 进球 教练 冠军 运动员 比分", "美食": "米饭 面条 厨师 味道 蔬菜 炒菜 饺子 汤"}
  glue = "我们 今天 非常 喜欢 这个 他们 一起 看到".split()
  rows = []
  for i in range(n):
    label = list(words)[i % 2]
    picked = list(rng.choice(words[label].split(), 3)) + list(rng.choice(glue, 3))
    rows.append(("".join(rng.permutation(picked)) + "。", label))
  return write_csv(path, rows)


@pytest.mark.slow  # whole trainings
def test_chinese_text_is_split_into_characters_by_default_and_trains(tmp_path, capfd):
  """Case 7: every Chinese text would be one "word" to the word encoder, so the default splits them into
  characters and says so (issue 30); characters train it."""
  import csv_run  # pylint: disable=g-import-not-at-top
  path = chinese_topics(tmp_path / "chinese.csv")
  assert text_files.load(config(tmp_path, path)).assets["text_encoder"]["tokenizer"] == "char"
  warning = capfd.readouterr().err
  assert "100% of the training texts are written without spaces between words" in warning, warning
  cfg = csv_run.config(tmp_path, path, **{"data.tokenizer": "char", "data.char_ngrams": 2, "data.num_words": 2000,
                                          "data.seq_len": 40, "train.num_steps": 60})
  results = csv_run.train(cfg, tmp_path / "run")
  assert results["accuracy"] >= 0.9  # chance is 0.5
  assert "single token" not in capfd.readouterr().err


def test_file_fingerprint_is_read_once_while_the_file_is_unchanged(tmp_path, monkeypatch):
  """A resume fingerprints the user's file before preparing it and the loader does again: one read."""
  import hashlib  # pylint: disable=g-import-not-at-top
  path = tmp_path / "data.csv"
  path.write_text("text,label\na,x\n")
  reads = []
  real = records._sha256  # pylint: disable=protected-access
  monkeypatch.setattr(records, "_sha256", lambda p: reads.append(p) or real(p))
  first = records.file_sha256(path)
  assert records.file_sha256(str(path)) == first == hashlib.sha256(path.read_bytes()).hexdigest()
  assert len(reads) == 1
  path.write_text("text,label\nb,y\n")  # same size: the modification time (or inode) tells
  os.utime(path, ns=(1, 1))
  assert records.file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest() != first
  assert len(reads) == 2


def test_a_bad_file_is_refused_before_preparing_is_announced_or_written(tmp_path, capfd):
  """One line for a bad file: not a "preparing ..." line first, nor a half-written data directory."""
  path = write_csv(tmp_path / "data.csv", reviews(40), header=("body", "label"))
  with pytest.raises(UserError, match="column 'text' not found in data.csv"):
    text_files.load(config(tmp_path, path))
  assert "preparing" not in capfd.readouterr().err
  assert not list((tmp_path / "tfds").glob("*/*/*"))
  path = write_csv(path, reviews(40))
  text_files.load(config(tmp_path, path))
  assert "preparing" in capfd.readouterr().err
