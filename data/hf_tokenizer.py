"""Pretrained models' own tokenizers, from a Hugging Face `tokenizer.json` through the `tokenizers`
library: WordPiece with [CLS] ... [SEP] for BERT, byte-level BPE for GPT-2 and Llama (with Llama's BOS),
whatever the file's normalizer, pre-tokenizer and post-processor say.

A language model's rows and documents start with the special tokens the post-processor puts before a text
(`prefix_ids`: Llama's BOS) and carry no other: lm_text encodes their text without special tokens.

Texts are encoded in batches to a fixed length: truncated on the right (the post-processor's special tokens
kept) and padded on the right with the model's padding token. `save` writes the tokenizer, with that
truncation and padding, as one JSON file beside a run, and `HFTokenizer(that file)` encodes exactly as
training did.
"""
import json
import os

import numpy as np
import tokenizers

from flaxforge.core.errors import UserError


def _special(directory, key):
  """A special token's text from tokenizer_config.json or special_tokens_map.json, if either names it."""
  for name in ("tokenizer_config.json", "special_tokens_map.json"):
    try:
      with open(os.path.join(directory, name)) as f:
        token = json.load(f).get(key)
    except OSError:
      continue
    token = token.get("content") if isinstance(token, dict) else token
    if token:
      return token
  return None


def prefix_ids(tokenizer: tokenizers.Tokenizer) -> list[int]:
  """The ids the post-processor puts before a text: Llama's and Mistral's <s>, BERT's [CLS]; [] for GPT-2.
  Read from a probe text's encoding: the tokens before its first one that came from the text (a post-processor's
  tokens have no sequence id). `tokenizer` must not pad on the left."""
  probe = tokenizer.encode("a", add_special_tokens=True)
  first = next((i for i, s in enumerate(probe.sequence_ids) if s is not None), len(probe.ids))
  return probe.ids[:first]


class HFTokenizer:
  """tokenizer.json (a file, or a Hugging Face directory holding one) encoding to `seq_len` tokens (None:
  the file's own truncation length, as in a file that `save` wrote).

  The padding token is the file's own padding setting, else tokenizer_config.json's pad_token, else its
  eos_token (GPT-2 and Llama name no padding token; the mask hides it either way), else id 0.
  Raises UserError when the file is missing or unreadable.
  """

  def __init__(self, path, seq_len: int | None = None, *, tokenizer: tokenizers.Tokenizer | None = None):
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    try:
      self.tokenizer = tokenizer or tokenizers.Tokenizer.from_file(file)
    except Exception as e:  # tokenizers raises a bare Exception for a missing or malformed file
      raise UserError(f"cannot read the tokenizer {file} ({e}); point at a Hugging Face tokenizer.json "
                      "or the model directory that holds one") from None
    padding = self.tokenizer.padding or {}
    directory = os.path.dirname(file)
    pad_token = padding.get("pad_token") or _special(directory, "pad_token") or _special(directory, "eos_token")
    pad_id = self.tokenizer.token_to_id(pad_token) if pad_token else None
    if pad_id is None:
      pad_token, pad_id = self.tokenizer.id_to_token(0), 0
    seq_len = seq_len or (self.tokenizer.truncation or {}).get("max_length")
    if not seq_len:
      raise UserError(f"{file} sets no length; give the sequence length (e.g. --config.data.seq_len=128)")
    self.seq_len, self.pad_id = int(seq_len), pad_id
    self.tokenizer.enable_truncation(max_length=self.seq_len, direction="right")
    self.tokenizer.enable_padding(length=self.seq_len, pad_id=pad_id, pad_token=pad_token, direction="right")

  @property
  def vocab_size(self) -> int:
    """Ids run from 0 to vocab_size - 1 (added tokens included)."""
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  def encode(self, texts) -> tuple[np.ndarray, np.ndarray]:
    """list of str -> (ids int32 [B, seq_len], mask int32 [B, seq_len]: 1 for tokens, 0 for padding)."""
    encodings = self.tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encodings], np.int32).reshape(len(encodings), self.seq_len)
    mask = np.array([e.attention_mask for e in encodings], np.int32).reshape(ids.shape)
    return ids, mask

  def decode(self, ids) -> list[str]:
    """int [B, T] -> B texts, special tokens and padding left out."""
    return self.tokenizer.decode_batch([list(map(int, row)) for row in np.asarray(ids)], skip_special_tokens=True)

  def to_json(self) -> dict:
    """The tokenizer (vocabulary, rules, truncation and padding) as tokenizer.json's JSON object."""
    return json.loads(self.tokenizer.to_str())

  @classmethod
  def from_json(cls, d: dict) -> "HFTokenizer":
    """Encodes exactly as the tokenizer that `to_json` wrote."""
    return cls("", tokenizer=tokenizers.Tokenizer.from_str(json.dumps(d)))

  def save(self, directory) -> str:
    """Writes directory/tokenizer.json (the vocabulary, rules, truncation and padding) and returns its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "tokenizer.json")
    self.tokenizer.save(path)
    return path
