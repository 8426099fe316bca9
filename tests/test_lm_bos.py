"""Issue 30 S1: a tokenizer whose post-processor adds a BOS (Llama 2/3, Mistral, Gemma) puts exactly one BOS at
the start of each fine-tuning row and each pretraining document, never before a completion, and the supervised
labels are the completion's own tokens and the end-of-text."""
import json

import numpy as np
import pytest
import tokenizers
from tokenizers import models, pre_tokenizers, processors

from flaxforge.data import lm_text

WORDS = "is the sky blue yes no water wet rocket orbit bread cheese".split()
SPECIAL = ["<unk>", "<s>", "</s>"]  # Llama's ids 0, 1, 2


def _llama_like(path, single: str) -> str:
  """A word-level tokenizer.json whose post-processor is `single` ("<s> $A": Llama; "<s> $A </s>": a
  tokenizer that adds both), with tokenizer_config.json naming </s> as the end-of-text, in `path`."""
  vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
  tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=[("<s>", 1), ("</s>", 2)])
  path.mkdir()
  tok.save(str(path / "tokenizer.json"))
  (path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
  return str(path)


@pytest.fixture(params=["<s> $A", "<s> $A </s>"])
def llama_dir(request, tmp_path):
  return _llama_like(tmp_path / "llama", request.param)


def _ids(*words):
  return [SPECIAL.index(w) if w in SPECIAL else len(SPECIAL) + WORDS.index(w) for w in words]


def test_a_completion_gets_no_bos_and_the_row_one(llama_dir, tmp_path):
  corpus = tmp_path / "sft.jsonl"
  corpus.write_text("\n".join(json.dumps({"prompt": "is the sky blue", "completion": "yes"}) for _ in range(20)))
  ds = lm_text.load({"path": str(corpus), "tokenizer": "hf", "tokenizer_path": llama_dir, "seq_len": 8,
                     "validation_fraction": 0.1, "test_fraction": 0.1})
  row = ds.splits["train"][0]
  mask = row["loss_mask"] > 0
  assert row["label"][mask].tolist() == _ids("yes", "</s>")  # not ['<s>', 'yes', '</s>']
  assert row["inputs"].tolist() == _ids("<s>", "is", "the", "sky", "blue", "yes", "</s>", "</s>")  # </s> pads
  assert row["inputs"].tolist().count(1) == 1


def test_each_pretraining_document_starts_with_one_bos_and_ends_with_one_eos(llama_dir, tmp_path):
  corpus = tmp_path / "docs.jsonl"
  corpus.write_text("\n".join(json.dumps({"text": t}) for t in ["water wet", "rocket orbit", "bread cheese"] * 20))
  ds = lm_text.load({"path": str(corpus), "tokenizer": "hf", "tokenizer_path": llama_dir, "seq_len": 4,
                     "validation_fraction": 0.0, "test_fraction": 0.1})
  stream = ds.splits["train"].stream.tolist()
  assert stream[:11] == _ids("<s>", "water", "wet", "</s>", "<s>", "rocket", "orbit", "</s>", "<s>", "bread",
                             "cheese")
  assert all(a != b or a not in (1, 2) for a, b in zip(stream, stream[1:]))  # no <s> <s>, no </s> </s>


def test_the_sampler_codec_starts_a_prompt_as_training_started_a_row(llama_dir):
  from flaxforge.data import hf_tokenizer, text  # pylint: disable=g-import-not-at-top
  tokenizer = text.PretrainedEncoder(hf_tokenizer.HFTokenizer(llama_dir, 8)).to_json()
  encode, decode, end = lm_text.codec(tokenizer)
  assert encode("is the sky blue") == _ids("<s>", "is", "the", "sky", "blue") and end == 2
  assert decode(np.array(_ids("yes"))) == "yes"
