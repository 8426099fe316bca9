"""data/hf_tokenizer.py against transformers' AutoTokenizer: MiniLM's WordPiece ([CLS]/[SEP], lower-casing,
accents, CJK) and a byte-level BPE with a Llama-style BOS, truncated and padded to a fixed length; the saved
asset encodes the same."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported

import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position
import tokenizers  # pylint: disable=wrong-import-position
import transformers  # pylint: disable=wrong-import-position
from tokenizers import decoders, models, pre_tokenizers, processors, trainers  # pylint: disable=wrong-import-position

from flaxforge.core.errors import UserError  # pylint: disable=wrong-import-position
from flaxforge.data import text  # pylint: disable=wrong-import-position
from flaxforge.data.hf_tokenizer import HFTokenizer  # pylint: disable=wrong-import-position

TEXTS = ["The space shuttle reached orbit on Tuesday.", "ok", "",
         "Crème brûlée, naïve café — 東京 and 北京!  Numbers: 3.14159, e-mail a@b.org",
         "A much longer sentence that goes on and on, well past the sixteen tokens that the encoder keeps."]


def reference(directory, seq_len):
  tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
  tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token  # what GPT-2 and Llama users set
  out = tokenizer(TEXTS, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
  return out["input_ids"], out["attention_mask"]


def assert_same(ours: HFTokenizer, directory, seq_len):
  ids, mask = ours.encode(TEXTS)
  want_ids, want_mask = reference(directory, seq_len)
  assert ids.shape == (len(TEXTS), seq_len) and ids.dtype == np.int32
  np.testing.assert_array_equal(mask, want_mask)
  np.testing.assert_array_equal(ids[mask == 1], want_ids[want_mask == 1])  # where HF pads is its own choice
  assert (ids[mask == 0] == ours.pad_id).all()


@pytest.mark.slow  # the shared MiniLM
def test_wordpiece_matches_autotokenizer(minilm, tmp_path):
  ours = HFTokenizer(minilm, seq_len=16)
  assert_same(ours, minilm, 16)
  ids, mask = ours.encode(TEXTS)
  assert ids[0, 0] == 101 and ids[0, mask[0].sum() - 1] == 102 and ours.pad_id == 0  # [CLS] ... [SEP] [PAD]
  assert mask[-1].all() and ids[-1, -1] == 102  # truncated, [SEP] kept
  # The run's asset: one file that encodes the same without being told the length.
  again = HFTokenizer(ours.save(tmp_path / "assets"))
  np.testing.assert_array_equal(again.encode(TEXTS)[0], ids)
  assert again.decode(ids[:1]) == ["the space shuttle reached orbit on tuesday."]


@pytest.fixture(scope="module")
def byte_bpe(tmp_path_factory):
  """A byte-level BPE trained here, with a BOS that the post-processor adds (as Llama 3's does), saved as
  transformers saves a fast tokenizer."""
  bpe = tokenizers.Tokenizer(models.BPE())
  bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  bpe.decoder = decoders.ByteLevel()
  corpus = [t * 3 for t in TEXTS[:2]] + ["the quick brown fox jumps over the lazy dog"] * 5
  bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
  path = str(tmp_path_factory.mktemp("bpe"))
  fast = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>")
  fast.save_pretrained(path)
  return path


def test_byte_level_bpe_matches_autotokenizer(byte_bpe):
  ours = HFTokenizer(byte_bpe, seq_len=12)
  assert ours.pad_id == 1  # no padding token named: the eos token pads, and the mask hides it
  assert_same(ours, byte_bpe, 12)
  ids, mask = ours.encode(TEXTS)
  assert (ids[:, 0] == 0).all()  # BOS
  assert ours.decode(ids[1:2]) == ["ok"]


def test_missing_tokenizer_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="tokenizer.json"):
    HFTokenizer(tmp_path, seq_len=8)


@pytest.mark.parametrize("given,said", [("", "no model or tokenizer is named"), ("missing", "missing does not exist"),
                                        (".", "holds none")])
def test_the_missing_tokenizer_message_says_what_is_missing(tmp_path, given, said):
  path = str(tmp_path / given) if given else ""
  with pytest.raises(UserError, match=f"needs a tokenizer.json, but .*{said}; pass --config.model.pretrained="):
    text.encoder_options({"tokenizer": "hf", "tokenizer_path": path, "seq_len": 8})
