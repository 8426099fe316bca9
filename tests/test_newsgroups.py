"""data/newsgroups.py on tiny archives made here (same layout as the real one), plus one real-archive check."""
import functools
import hashlib
import http.server
import io
import os
import pathlib
import tarfile
import threading

import numpy as np
import pytest
import tensorflow_datasets as tfds

from flaxforge.data import newsgroups, text
from flaxforge.core.errors import UserError

GROUPS = {"alt.atheism": 0, "sci.space": 14, "talk.religion.misc": 19}
TRAIN_PER_GROUP, TEST_PER_GROUP = 8, 3


def post(group, i):
  return (f"From: user{i}@{group}.edu\nSubject: about {group.split('.')[-1]} {i}\n\n"
          f"{group.replace('.', ' ')} message {i} talks of {group.split('.')[-1]}\n").encode("latin-1")


def make_archive(folder: pathlib.Path, extra=()) -> pathlib.Path:
  folder.mkdir(parents=True, exist_ok=True)
  members = [(f"20news-bydate-{split}/{g}/{1000 + i}", post(g, i))
             for split, n in (("train", TRAIN_PER_GROUP), ("test", TEST_PER_GROUP)) for g in GROUPS for i in range(n)]
  members.append(("20news-bydate-test/sci.space/2000", b"Subject: caf\xe9\n\nna\xefve space caf\xe9\n"))
  path = folder / newsgroups.ARCHIVE
  with tarfile.open(path, "w:gz") as tar:
    for name, body in [*members, *extra]:
      info = tarfile.TarInfo(name)
      info.size = len(body)
      tar.addfile(info, io.BytesIO(body))
  return path


def config(tmp_path, **overrides):
  return {"data_dir": str(tmp_path / "tfds"), "manual_dir": str(tmp_path / "manual"), "seq_len": 12,
          "validation_fraction": 0.25, **overrides}


def test_documents_in_load_files_order_with_latin1(tmp_path):
  archive = make_archive(tmp_path)
  test = list(newsgroups.documents(archive, "test"))
  assert len(test) == 3 * TEST_PER_GROUP + 1
  assert [label for _, label in test] == [0] * 3 + [14] * 4 + [19] * 3
  assert test[3][0] == post("sci.space", 0).decode("latin-1")
  assert test[6][0].encode("latin-1") == b"Subject: caf\xe9\n\nna\xefve space caf\xe9\n"
  assert len(list(newsgroups.documents(archive, "train"))) == 3 * TRAIN_PER_GROUP


def test_unknown_folder_is_a_user_error(tmp_path):
  archive = make_archive(tmp_path, extra=[("20news-bydate-train/comp.unknown/1", b"x")])
  with pytest.raises(UserError, match="comp.unknown"):
    list(newsgroups.documents(archive, "train"))


def test_load_tiny_archive(tmp_path):
  make_archive(tmp_path / "manual")
  ds = newsgroups.load(config(tmp_path))
  sizes = {name: len(src) for name, src in ds.splits.items()}
  assert sizes == {"train": 18, "validation": 6, "test": 10}  # 25% of each group's 8 train posts held out
  assert ds.info == {"task": "classification", "num_classes": 20, "label_names": list(newsgroups.GROUPS),
                     "vocab_size": ds.info["vocab_size"], "seq_len": 12}
  assert ds.assets["labels"] == list(newsgroups.GROUPS)
  for name, src in ds.splits.items():
    labels = [src[i]["label"] for i in range(len(src))]
    assert sorted(set(labels)) == sorted(GROUPS.values()), name
  ex = ds.splits["train"][0]
  assert ex["inputs"].dtype == np.int32 and ex["inputs"].shape == (12,)

  # The stored rows are the saved encoder applied to the raw posts; the encoder was fitted on train only.
  encoder = text.TextEncoder.from_json(ds.assets["text_encoder"])
  assert encoder.seq_len == 12 and encoder.vocab_size == ds.info["vocab_size"]
  raw = list(newsgroups.documents(tmp_path / "manual" / newsgroups.ARCHIVE, "test"))
  want = sorted((tuple(row), y) for row, (_, y) in zip(encoder.encode([t for t, _ in raw]), raw))
  test = ds.splits["test"]
  assert sorted((tuple(test[i]["inputs"]), test[i]["label"]) for i in range(len(test))) == want
  assert "naïve" not in encoder.vocab  # only in the test split


def test_metadata_round_trip_and_no_rebuild(tmp_path, monkeypatch):
  make_archive(tmp_path / "manual")
  first = newsgroups.load(config(tmp_path))
  (prepared,) = (tmp_path / "tfds" / "twenty_newsgroups").iterdir()
  reopened = tfds.builder_from_directory(str(prepared / "1.0.0"))
  assert dict(reopened.info.metadata) == {"text_encoder": first.assets["text_encoder"],
                                          "label_names": list(newsgroups.GROUPS)}

  def must_not_run(*args, **kwargs):
    raise AssertionError("rebuilt")
  monkeypatch.setattr(newsgroups.TwentyNewsgroups, "_split_generators", must_not_run)
  second = newsgroups.load(config(tmp_path, manual_dir=""))  # no archive needed once prepared
  assert second.assets == first.assets and len(second.splits["test"]) == 10
  with pytest.raises(AssertionError, match="rebuilt"):  # another option is another prepared dataset
    newsgroups.load(config(tmp_path, seq_len=13))


def test_missing_archive_names_manual_dir(tmp_path):
  (tmp_path / "manual").mkdir()
  with pytest.raises(UserError, match="--config.data.manual_dir"):
    newsgroups.load(config(tmp_path))


@pytest.fixture
def http_server(tmp_path):
  make_archive(tmp_path / "served")
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served"))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  yield f"http://127.0.0.1:{server.server_address[1]}/{newsgroups.ARCHIVE}"
  server.shutdown()


def test_download_checks_sha256(tmp_path, monkeypatch, http_server):
  digest = hashlib.sha256((tmp_path / "served" / newsgroups.ARCHIVE).read_bytes()).hexdigest()
  monkeypatch.setattr(newsgroups, "URL", http_server)
  monkeypatch.setattr(newsgroups, "SHA256", "0" * 64)
  with pytest.raises(UserError, match="sha256"):
    newsgroups.load(config(tmp_path, manual_dir=""))
  monkeypatch.setattr(newsgroups, "SHA256", digest)
  ds = newsgroups.load(config(tmp_path, manual_dir="", data_dir=str(tmp_path / "tfds2")))
  assert len(ds.splits["test"]) == 10


def test_offline_without_manual_dir_names_manual_dir(tmp_path, monkeypatch):
  monkeypatch.setattr(newsgroups, "URL", "http://127.0.0.1:9/20news-bydate.tar.gz")  # discard port: refused
  with pytest.raises(UserError, match="--config.data.manual_dir"):
    newsgroups.load(config(tmp_path, manual_dir=""))


@pytest.mark.slow  # real data
def test_real_archive(tmp_path):
  """The real archive, end to end: prepared counts and label order equal scikit-learn's."""
  root = os.environ.get("FLAXFORGE_DATASETS")
  if not root:
    pytest.skip("FLAXFORGE_DATASETS is not set (the folder holding 20newsgroups/20news-bydate.tar.gz)")
  ds = newsgroups.load({"data_dir": str(tmp_path), "manual_dir": os.path.join(root, "20newsgroups")})
  assert len(ds.splits["train"]) + len(ds.splits["validation"]) == 11314
  assert len(ds.splits["validation"]) == 1130  # stratified 10%
  assert len(ds.splits["test"]) == 7532
  assert ds.info["label_names"] == sorted(ds.info["label_names"]) and len(ds.info["label_names"]) == 20
  assert ds.info["label_names"][15] == "soc.religion.christian" and ds.info["vocab_size"] == 10000
  test_labels = np.bincount([ds.splits["test"][i]["label"] for i in range(7532)], minlength=20)
  assert test_labels[[0, 19]].tolist() == [319, 251]  # alt.atheism, talk.religion.misc test counts


def test_manual_dir_expands_home_and_variables(tmp_path, monkeypatch):
  """Case 9: the shell leaves `~` after `=`, so --config.data.manual_dir=~/news arrives unexpanded."""
  make_archive(tmp_path / "home" / "news")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  monkeypatch.setenv("NEWS_DIR", str(tmp_path / "home" / "news"))
  assert newsgroups.load(config(tmp_path, manual_dir="~/news")).info["num_classes"] == 20
  assert newsgroups.load(config(tmp_path, manual_dir="$NEWS_DIR", data_dir="~/tfds")).info["num_classes"] == 20
  assert (tmp_path / "home" / "tfds" / "twenty_newsgroups").is_dir()


def test_a_truncated_manual_archive_is_one_line(tmp_path):
  """Case 11: checked like a download, instead of an EOFError traceback while reading it."""
  archive = make_archive(tmp_path / "manual")
  archive.write_bytes(archive.read_bytes()[:len(archive.read_bytes()) // 2])
  with pytest.raises(UserError) as e:
    newsgroups.load(config(tmp_path))
  assert "20news-bydate.tar.gz is incomplete or damaged" in str(e.value) and "download it again from" in str(e.value)
  assert "\n" not in str(e.value)
