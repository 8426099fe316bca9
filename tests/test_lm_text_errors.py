"""data/lm_text.py with a pretrained tokenizer and the user's own files: a bad row named in one line,
completions that seq_len cuts off, honest bytes per token, and an edited corpus refused on resume."""
import hashlib
import json
import os
import pathlib

import pytest
import tokenizers
from tokenizers import models, pre_tokenizers

from flaxforge.core.errors import UserError
from flaxforge.data import lm_text, records
from flaxforge.launch.configs import gpt_text
from flaxforge.trainer import loop

WORDS = "the rocket reached orbit and the crew ate bread with cheese before the match began".split()


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
  """A byte-level BPE tokenizer.json (GPT-2 style, <|endoftext|> = id 0) trained on WORDS."""
  path = tmp_path_factory.mktemp("bpe")
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  tok.train_from_iterator([" ".join(WORDS)] * 20, tokenizers.trainers.BpeTrainer(
      vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.save(str(path / "tokenizer.json"))
  return str(path)


def _hf(tokenizer_dir, path, **cfg):
  return {"path": str(path), "tokenizer": "hf", "tokenizer_path": tokenizer_dir, "seq_len": 16, **cfg}


def _write(path, rows):
  path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
  return path


def _sft_rows(n=60):
  return [{"prompt": f"the crew {i}", "completion": " ate bread"} for i in range(n)]


def test_a_row_that_breaks_the_files_kind_is_named(tokenizer_dir, tmp_path):
  rows = _sft_rows()
  del rows[50]["completion"]
  path = _write(tmp_path / "sft_bad.jsonl", rows)
  with pytest.raises(UserError, match=r"^sft_bad.jsonl row 51: field 'completion' not found; row 1 has 'prompt'"):
    lm_text.load(_hf(tokenizer_dir, path))
  path = _write(tmp_path / "sft_response.jsonl", [{"prompt": r["prompt"], "response": " ate"} for r in _sft_rows()])
  with pytest.raises(UserError) as e:
    lm_text.load(_hf(tokenizer_dir, path))
  message = str(e.value)
  assert message.startswith("sft_response.jsonl row 1: field 'completion' not found") and "\n" not in message
  assert "'prompt' and 'completion'" in message and "'text'" in message and "--config.data.text_column" in message
  path = _write(tmp_path / "corpus.jsonl", [{"text": "the crew"}] * 3 + ["not json"])
  with pytest.raises(UserError, match="^corpus.jsonl row 4: not valid UTF-8 JSON"):
    lm_text.load(_hf(tokenizer_dir, path))


@pytest.mark.parametrize("value,shown", [(None, "null"), (7, "7"), ("", '""'), (["a"], r'\["a"\]')])
def test_a_null_empty_or_non_string_completion_is_named(tokenizer_dir, tmp_path, value, shown):
  rows = _sft_rows()
  rows[2]["completion"] = value
  path = _write(tmp_path / "sft.jsonl", rows)
  with pytest.raises(UserError, match=f"^sft.jsonl row 3: 'completion' is {shown}; row 1 has"):
    lm_text.load(_hf(tokenizer_dir, path))
  rows = _sft_rows()
  rows[4]["prompt"] = value
  if value == "":  # an empty prompt is allowed: the completion alone is learned
    return
  with pytest.raises(UserError, match=f"^sft.jsonl row 5: 'prompt' is {shown}"):
    lm_text.load(_hf(tokenizer_dir, _write(tmp_path / "sft.jsonl", rows)))


def test_completions_cut_off_by_seq_len_are_refused_or_counted(tokenizer_dir, tmp_path, capsys):
  long_prompt = " ".join(WORDS)  # more than 16 tokens
  rows = [{"prompt": long_prompt, "completion": " ate bread"} for _ in range(40)]
  with pytest.raises(UserError, match=r"data.seq_len=16 leaves no completion tokens after the prompt in 40 of 40 "
                                      r"rows.*raise --config.data.seq_len"):
    lm_text.load(_hf(tokenizer_dir, _write(tmp_path / "sft.jsonl", rows)))
  rows = [{"prompt": long_prompt if i % 4 == 0 else "the crew", "completion": " ate bread"} for i in range(40)]
  ds = lm_text.load(_hf(tokenizer_dir, _write(tmp_path / "sft.jsonl", rows)))
  assert "warning: sft.jsonl: data.seq_len=16 leaves no completion tokens after the prompt in 10 of 40 rows" \
      in capsys.readouterr().err
  assert ds.splits["train"].arrays["loss_mask"].sum(1).tolist().count(0) == 8  # rows 0, 4, ..., 28 of 32


def test_bytes_per_token_is_measured_for_a_pretrained_tokenizer(tokenizer_dir, tmp_path):
  encode = tokenizers.Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json")).encode
  doc = "the rocket reached orbit é"
  tokens = len(encode(doc).ids)
  ds = lm_text.load(_hf(tokenizer_dir, _write(tmp_path / "docs.jsonl", [{"text": doc}] * 200)))
  # Each document and its end-of-text: len(doc.encode()) bytes in tokens + 1 tokens.
  assert ds.info["bytes_per_token"] == pytest.approx(len(doc.encode()) / (tokens + 1), rel=0.01)
  assert ds.info["bytes_per_token"] > 2.0
  rows = [{"prompt": "the crew", "completion": " ate bread with cheese"}] * 50
  ds = lm_text.load(_hf(tokenizer_dir, _write(tmp_path / "sft.jsonl", rows)))
  completion = len(encode(" ate bread with cheese").ids)
  assert ds.info["bytes_per_token"] == pytest.approx(len(" ate bread with cheese") / (completion + 1))


def test_the_file_is_fingerprinted(tokenizer_dir, tmp_path):
  path = _write(tmp_path / "docs.jsonl", [{"text": "the rocket reached orbit"}] * 200)
  ds = lm_text.load(_hf(tokenizer_dir, path))
  assert ds.source == {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("the cat sat on the mat. " * 100)
  before = records.describe("lm_text", lm_text.load({"path": str(corpus), "seq_len": 16}))
  corpus.write_text("the cat sat on the mat. " * 99 + "the dog sat on the log. ")  # as long: same splits
  after = records.describe("lm_text", lm_text.load({"path": str(corpus), "seq_len": 16}))
  assert records.differences(before, after) == [
      f"the content of {corpus} (sha256 {before['source_sha256'][:12]} -> {after['source_sha256'][:12]})"]
  encoded = records.describe("lm_text", ds)
  tokenizer = json.loads((pathlib.Path(tokenizer_dir) / "tokenizer.json").read_text())
  tokenizer["added_tokens"][0]["content"] = "<|end|>"  # another tokenizer: the same file encodes otherwise
  other = tmp_path / "other_tokenizer"
  other.mkdir()
  (other / "tokenizer.json").write_text(json.dumps(tokenizer))
  assert records.differences(encoded, records.describe("lm_text", lm_text.load(_hf(str(other), path)))) == [
      "the vocabulary or tokenizer"]
  assert not records.differences({**encoded, "vocabulary": ""}, encoded)  # recorded before it was taken


def _tiny_gpt(corpus, num_steps):
  c = gpt_text.get_config()
  c.data.path, c.data.seq_len, c.data.batch_size, c.data.eval_batch_size = str(corpus), 16, 8, 8
  c.data.test_bytes, c.data.validation_fraction = 0, 0.1
  c.model.size = "tiny"
  c.optimizer.warmup_steps = 1
  c.train.num_steps, c.train.eval_every_steps, c.train.log_every, c.train.progress_bar = num_steps, 2, 2, False
  return c


@pytest.mark.slow  # a whole training
def test_resuming_after_the_corpus_is_edited_is_refused(tmp_path):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("the cat sat on the mat. " * 200)
  loop.train(_tiny_gpt(corpus, 2), str(tmp_path / "run"))
  record = json.loads((tmp_path / "run" / "data.json").read_text())
  assert record["source"] == str(corpus) and len(record["source_sha256"]) == 64
  corpus.write_text("the cat sat on the mat. " * 199 + "the dog sat on the log. ")  # as long: same splits
  metrics = (tmp_path / "run" / "metrics.jsonl").read_bytes()
  with pytest.raises(UserError, match=r"other data \(the content of .*corpus.txt \(sha256 \w+ -> \w+\)"):
    loop.train(_tiny_gpt(corpus, 4), str(tmp_path / "run"))
  assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == metrics
