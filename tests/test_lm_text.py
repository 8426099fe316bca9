"""data/lm_text.py: byte windows, file and 20 Newsgroups sources, and the lm_ref-compatible test split."""
import io
import json
import tarfile

import numpy as np
import pytest

from flaxforge.data import lm_text, newsgroups
from flaxforge.core.errors import UserError


def test_windows_shift_labels_by_one():
  windows = lm_text.Windows(np.arange(23, dtype=np.uint8), seq_len=5)
  assert len(windows) == 4  # 22 // 5: every window needs its next byte
  ex = windows[1]
  assert ex["inputs"].tolist() == [5, 6, 7, 8, 9] and ex["label"].tolist() == [6, 7, 8, 9, 10]
  assert ex["inputs"].dtype == np.int32 and ex["label"].dtype == np.int32
  assert windows[-1]["label"].tolist() == [16, 17, 18, 19, 20]
  with pytest.raises(IndexError):
    windows[4]
  assert len(lm_text.Windows(np.arange(5, dtype=np.uint8), seq_len=5)) == 0


def test_txt_file_split_by_position(tmp_path):
  path = tmp_path / "corpus.txt"
  data = np.random.default_rng(0).integers(0, 256, 10240, dtype=np.uint8).tobytes()
  path.write_bytes(data)
  ds = lm_text.load({"path": str(path), "seq_len": 16, "validation_fraction": 0.1, "test_fraction": 0.2})
  assert ds.info == {"task": "lm", "vocab_size": 256, "seq_len": 16, "bytes_per_token": 1.0}
  assert [len(ds.splits[s].stream) for s in ("train", "validation", "test")] == [7168, 1024, 2048]
  assert bytes(ds.splits["validation"][0]["inputs"].astype(np.uint8)) == data[7168:7184]
  assert bytes(ds.splits["test"][1]["label"].astype(np.uint8)) == data[8209:8225]
  assert len(ds.splits["train"]) == (7168 - 1) // 16


def test_jsonl_documents_joined_with_separator(tmp_path):
  path = tmp_path / "docs.jsonl"
  path.write_text("\n".join(json.dumps({"body": f"doc {i} é"}) for i in range(100)))
  ds = lm_text.load({"path": str(path), "seq_len": 8, "text_column": "body", "separator": 10})
  joined = "\n".join(f"doc {i} é" for i in range(100)).encode("utf-8")
  got = b"".join(bytes(ds.splits[s].stream) for s in ("train", "validation", "test"))
  assert got == joined
  path.write_text('{"body": "a"}\n{"text": "b"}\n')
  with pytest.raises(UserError, match="docs.jsonl row 2: field 'body' not found; every row of a corpus needs a "
                                      "string field 'body'"):
    lm_text.load({"path": str(path), "text_column": "body"})


def test_bad_inputs(tmp_path):
  with pytest.raises(UserError, match="not found"):
    lm_text.load({"path": str(tmp_path / "none.txt")})
  (tmp_path / "x.csv").write_text("a")
  with pytest.raises(UserError, match="unknown file type"):
    lm_text.load({"path": str(tmp_path / "x.csv")})
  (tmp_path / "short.txt").write_text("too short")
  with pytest.raises(UserError, match="lower --config.data.seq_len"):
    lm_text.load({"path": str(tmp_path / "short.txt"), "seq_len": 64})
  with pytest.raises(UserError, match="--config.data.manual_dir"):
    lm_text.load({"manual_dir": str(tmp_path)})


def test_newsgroups_source_matches_lm_ref(tmp_path):
  posts = {f"20news-bydate-{split}/{g}/{i}": f"{split} post {i} of {g} \xe9 ".encode("latin-1") * 3
           for split in ("train", "test") for g in ("alt.atheism", "sci.space") for i in range(100, 120)}
  with tarfile.open(tmp_path / newsgroups.ARCHIVE, "w:gz") as tar:
    for name, body in sorted(posts.items()):
      info = tarfile.TarInfo(name)
      info.size = len(body)
      tar.addfile(info, io.BytesIO(body))
  ds = lm_text.load({"manual_dir": str(tmp_path), "seq_len": 32, "test_bytes": 2000})
  # /work/shared/bench/lm_ref.py: test posts in archive order joined by b"\0", first N bytes, windows every seq_len.
  test = np.frombuffer(b"\0".join(b for n, b in sorted(posts.items()) if "-test/" in n), np.uint8)[:2000]
  assert len(ds.splits["test"]) == len(range(0, 2000 - 32 - 1, 32))
  for i in (0, len(ds.splits["test"]) - 1):
    assert ds.splits["test"][i]["inputs"].tolist() == test[i * 32:i * 32 + 32].tolist()
    assert ds.splits["test"][i]["label"].tolist() == test[i * 32 + 1:i * 32 + 33].tolist()
  train, validation = (bytes(ds.splits[s].stream).split(b"\0") for s in ("train", "validation"))
  assert len(validation) == 4  # 10% of the 40 train posts, held out whole
  assert sorted(train + validation) == sorted(b for n, b in posts.items() if "-train/" in n)
