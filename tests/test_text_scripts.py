"""Issue 30: text written without spaces between words (Chinese, Japanese, Thai) trains with the default text
config as well as with `tokenizer=char`: the word tokenizer splits CJK ideographs as BERT's BasicTokenizer does,
and falls back to characters, saying so on stderr and in data.json, when most training texts are written in
such scripts. Latin text is tokenized (and its prepared copy named) as before."""
import csv
import json

import numpy as np
import pytest

import csv_run
from flaxforge.data import text

CJK, HIRAGANA, THAI = 0x4E00, 0x3041, 0x0E01


def _write(path, rows):
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(("text", "label"))
    writer.writerows(rows)
  return path


def _rows(pools: dict, n=400, length=12, seed=0, glue=""):
  """`n` texts without spaces, each `length` characters drawn from its class's pool (plus `glue`'s)."""
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(n):
    label = sorted(pools)[i % len(pools)]
    chars = list(rng.choice(list(pools[label] + glue), length))
    rows.append(("".join(chars), label))
  return rows


def _pool(start, count):
  return "".join(chr(start + i) for i in range(count))


SCRIPTS = {
    # a few hundred distinct ideographs per class
    "chinese": dict(pools={"a": _pool(CJK, 300), "b": _pool(CJK + 300, 300)}),
    # kanji per class, with kana between them as Japanese writes
    "japanese": dict(pools={"a": _pool(CJK + 1000, 200), "b": _pool(CJK + 1200, 200)}, glue=_pool(HIRAGANA, 80)),
    # Thai: no spaces and no CJK block; each class its own consonants, shared vowels
    "thai": dict(pools={"a": _pool(THAI, 23), "b": _pool(THAI + 23, 23)}, glue=_pool(THAI + 0x30, 10)),
}
TINY = {"data.num_words": 1000, "data.seq_len": 16, "train.num_steps": 60, "train.eval_every_steps": 60}


@pytest.mark.slow  # whole trainings
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_the_default_text_config_reaches_the_char_tokenizers_accuracy(script, tmp_path, capfd):
  path = _write(tmp_path / f"{script}.csv", _rows(**SCRIPTS[script]))
  char = csv_run.train(csv_run.config(tmp_path, path, **TINY, **{"data.tokenizer": "char"}), tmp_path / "char")
  capfd.readouterr()
  default = csv_run.train(csv_run.config(tmp_path, path, **TINY), tmp_path / "default")
  assert char["accuracy"] >= 0.9 and default["accuracy"] >= char["accuracy"] - 0.02, (default, char)
  said = capfd.readouterr().err
  assert "of the training texts are written without spaces between words (Chinese, Japanese, Thai, ...), so " \
         "they are split into characters (data.tokenizer=char)" in said, said
  record = json.loads((tmp_path / "default" / "data.json").read_text())
  assert "split into characters" in record["tokenizer"]
  assert json.loads((tmp_path / "default" / "assets" / "text_encoder.json").read_text())["tokenizer"] == "char"


def test_cjk_ideographs_are_split_between_words_and_latin_words_are_not():
  encoder = text.TextEncoder.fit(["我喜欢 iPhone 手机", "the iPhone is good"] * 3)
  assert encoder.tokenizer == "word"  # most texts are not written without spaces
  assert encoder.tokens("我喜欢 iPhone 手机。") == ["我", "喜", "欢", "iphone", "手", "机", "。"]
  assert encoder.tokens("the iPhone, it's good") == ["the", "iphone", "it's", "good"]


def test_an_encoder_saved_before_the_split_still_tokenizes_as_it_was_trained():
  saved = text.TextEncoder.fit(["a b"]).to_json()
  saved.pop("split_cjk", None)  # what an older run's assets/text_encoder.json holds
  assert text.TextEncoder.from_json(saved).tokens("我喜欢 iPhone") == ["我喜欢", "iphone"]
  assert "split_cjk" not in text.TextEncoder.from_json(saved).to_json()  # its vocabulary digest is unchanged
