"""Text to token ids, exactly as Keras' `Tokenizer` + `pad_sequences` do it, saved as JSON beside the checkpoint.

Two departures from Keras, for text written without spaces between words: the word tokenizer splits CJK
ideographs into tokens of one character each, as BERT's BasicTokenizer does (`_tokenize_chinese_chars`, with
its code-point ranges); and when most training texts are written mostly in scripts without word spaces
(Han, kana, Thai, Lao, Khmer, Myanmar), `fit` uses the character tokenizer instead and says why (`chosen`).
Encoders saved before the split (no `split_cjk` in their JSON) tokenize as they did.

`TextEncoder.fit(texts, ...)` builds a top-N word vocabulary from the training texts; `encode(texts)` maps any
texts to an int32 [N, seq_len] array; `to_json()`/`from_json()` carry every option, so eval and predict
apply exactly what training applied. Also: scikit-learn's newsgroup header/footer/quote stripping, a
pretrained model's own tokenizer, and the trainer's view of a prepared copy of encoded texts (`from_builder`).
"""
import collections
import dataclasses
import os
import re
import sys
from typing import Iterable, Sequence

import numpy as np

from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.data import dataset, fields, records
from flaxforge.data.hf_tokenizer import HFTokenizer

REMOVABLE = ("headers", "footers", "quotes")
PRETRAINED = "hf"  # data.tokenizer: a pretrained model's own tokenizer.json (data.tokenizer_path)

# BERT's BasicTokenizer._is_chinese_char ranges (google-research/bert tokenization.py): CJK ideographs.
_CJK = re.compile("[\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002a6df\U0002a700-\U0002b73f"
                  "\U0002b740-\U0002b81f\U0002b820-\U0002ceaf\uf900-\ufaff\U0002f800-\U0002fa1f]")
# Scripts written without spaces between words (Unicode blocks): CJK ideographs, hiragana, katakana (with its
# extension and half-width forms), Thai, Lao, Myanmar, Khmer.
_UNSPACED = re.compile(_CJK.pattern[:-1] + "\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f\u0e00-\u0eff"
                       "\u1000-\u109f\u1780-\u17ff]")
_LETTER = re.compile(r"[^\W\d_]")

# scikit-learn's sklearn/datasets/_twenty_newsgroups.py, ported line for line.
_QUOTE_RE = re.compile(r"(writes in|writes:|wrote:|says:|said:|^In article|^Quoted from|^\||^>)")


def strip_header(text: str) -> str:
  """Drops everything before the first blank line."""
  _, _, after = text.partition("\n\n")
  return after


def strip_footer(text: str) -> str:
  """Drops the signature: everything after the last blank or all-hyphen line."""
  lines = text.strip().split("\n")
  for line_num in range(len(lines) - 1, -1, -1):
    if lines[line_num].strip().strip("-") == "":
      break
  return "\n".join(lines[:line_num]) if line_num > 0 else text


def strip_quoting(text: str) -> str:
  """Drops lines that quote another post ('>' or '|') or introduce a quote ('... writes:')."""
  return "\n".join(line for line in text.split("\n") if not _QUOTE_RE.search(line))


_STRIPPERS = {"headers": strip_header, "footers": strip_footer, "quotes": strip_quoting}


def parse_remove(remove) -> tuple[str, ...]:
  """`remove` as config spells it ('headers,quotes', a tuple, or '') -> a tuple in canonical order."""
  if isinstance(remove, str):
    remove = [r.strip() for r in remove.split(",") if r.strip()]
  unknown = sorted(set(remove) - set(REMOVABLE))
  if unknown:
    raise UserError(f"unknown data.remove value(s) {unknown}; use any of: {', '.join(REMOVABLE)}")
  return tuple(r for r in REMOVABLE if r in remove)


@dataclasses.dataclass
class TextEncoder:
  """Words -> ids. Id 0 is padding; with `oov`, id 1 stands for every word outside the vocabulary
  (else such words are dropped, as Keras does without `oov_token`); words take the next ids in order
  of training-set frequency, ties broken by first occurrence. All ids are < `num_words`. The settings are
  data.fields.Tokenizer's and Vocabulary's (`tokenizer` "word" or "char": Unicode characters, for text
  without spaces, each followed by the 2..char_ngrams-grams it starts); build one with `fit` or `from_json`."""
  vocab: list[str]
  seq_len: int
  num_words: int
  lowercase: bool
  filters: str
  remove: tuple[str, ...]
  oov: bool
  cls_token: bool  # position 0 of every row holds a [CLS] id (the id after padding and OOV)
  bigrams: bool
  padding: str
  truncating: str
  tokenizer: str
  char_ngrams: int
  split_cjk: bool = False  # word tokens: CJK ideographs one by one (every encoder `fit` makes; older ones not)
  chosen: str = ""  # why `fit` chose the tokenizer it did over the configured one, in words ("" if it did not)

  def __post_init__(self):
    self.remove = parse_remove(self.remove)
    if self.num_words < 2 + self.oov:
      raise UserError(f"data.oov needs data.num_words >= 3 (padding, OOV and a word); got {self.num_words}")
    self._table = str.maketrans({c: " " for c in self.filters})
    self._ids = {w: i + self.first_id for i, w in enumerate(self.vocab)}

  @property
  def first_id(self) -> int:
    return 1 + self.oov + self.cls_token

  @property
  def cls_id(self) -> int | None:
    return 1 + self.oov if self.cls_token else None

  @property
  def vocab_size(self) -> int:
    """Rows the embedding table needs: padding, OOV if any, and the kept words."""
    return self.first_id + len(self.vocab)

  pad_id = 0

  def token(self, token_id: int) -> str:
    """The word (or character, bigram) an id stands for: "[CLS]", "[OOV]" and "[PAD]" for the special ids."""
    if token_id == self.cls_id:
      return "[CLS]"
    if token_id < self.first_id:
      return "[OOV]" if self.oov and token_id == 1 else "[PAD]"
    return self.vocab[token_id - self.first_id]

  @classmethod
  def fit(cls, texts: Iterable[str], **options) -> "TextEncoder":
    """The vocabulary of `texts` under `options` (a setting left out takes its declared default); the word
    tokenizer becomes the character one when more than half of `texts` are written without spaces
    (`unspaced`)."""
    encoder, texts = cls(vocab=[], split_cjk=True, **_settings(options)), list(texts)
    share = np.mean([unspaced(t) for t in texts]) if texts and encoder.tokenizer == "word" else 0.0
    if share > 0.5:
      encoder = dataclasses.replace(encoder, tokenizer="char", chosen=(
          f"{share:.0%} of the training texts are written without spaces between words (Chinese, Japanese, Thai, "
          "...), so they are split into characters (data.tokenizer=char)"))
    counts = collections.Counter()
    for text in texts:
      counts.update(encoder.tokens(text))
    # most_common sorts stably by count, so ties keep first-occurrence order, as Keras' Tokenizer does.
    keep = encoder.num_words - encoder.first_id
    return dataclasses.replace(encoder, vocab=[w for w, _ in counts.most_common(keep)])

  def tokens(self, text: str) -> list[str]:
    """Keras' `text_to_word_sequence`: lower-case, filter characters to spaces, split on single spaces."""
    text = strip(text, self.remove)
    if self.lowercase:
      text = text.lower()
    if self.tokenizer == "char":  # each character followed by the n-grams it starts
      chars = "".join(text.translate(self._table).split())
      return [chars[i:i + n] for i in range(len(chars)) for n in range(1, self.char_ngrams + 1)
              if i + n <= len(chars)]
    text = text.translate(self._table)
    if self.split_cjk and not text.isascii():  # isascii: a flag of the string, no scan
      text = _CJK.sub(r" \g<0> ", text)
    words = [w for w in text.split(" ") if w]
    if self.bigrams:  # each word followed by the bigram it starts, so bigrams stay next to their words
      pairs = [f"{a} {b}" for a, b in zip(words, words[1:])]
      words = [t for pair in zip(words, pairs) for t in pair] + words[-1:]
    return words

  def ids(self, text: str) -> list[int]:
    get, oov = self._ids.get, (1 if self.oov else None)
    ids = [get(w, oov) for w in self.tokens(text)]
    return ids if self.oov else [i for i in ids if i is not None]

  def encode(self, texts: Sequence[str]) -> np.ndarray:
    """Keras `pad_sequences(..., maxlen=seq_len, padding=..., truncating=...)` of the texts' ids."""
    out = np.zeros((len(texts), self.seq_len), np.int32)
    if self.cls_token:  # [CLS] first, the words after it in the remaining seq_len - 1 positions
      out[:, 0] = self.cls_id
    for row, text in zip(out[:, 1:] if self.cls_token else out, texts):
      ids, width = self.ids(text), len(row)
      ids = ids[-width:] if self.truncating == "pre" else ids[:width]
      if ids:
        if self.padding == "pre":
          row[width - len(ids):] = ids
        else:
          row[:len(ids)] = ids
    return out

  def to_json(self) -> dict:
    """Every setting; `split_cjk` and `chosen` only when set, so an older encoder's JSON (and digest) stays."""
    d = dataclasses.asdict(self)
    d["remove"] = list(self.remove)
    for marker in ("split_cjk", "chosen"):
      if not d[marker]:
        del d[marker]
    return {"type": "word_encoder", **d}

  @classmethod
  def from_json(cls, d: dict) -> "TextEncoder":
    """The encoder `to_json` wrote (a setting it predates takes its declared default)."""
    if d.get("type", "word_encoder") != "word_encoder":
      raise UserError(f"not a word encoder: type {d['type']!r}")
    return cls(vocab=list(d["vocab"]), split_cjk=bool(d.get("split_cjk")), chosen=d.get("chosen") or "",
               **_settings(d))


def unspaced(text: str) -> bool:
  """Whether most of `text`'s letters belong to scripts written without spaces between words (_UNSPACED;
  Thai's vowel signs, not letters to Unicode, count as such)."""
  n = 0 if text.isascii() else len(_UNSPACED.findall(text))
  return n > 0 and 2 * n > len(_LETTER.findall(text))


def strip(text: str, remove: Sequence[str]) -> str:
  for part in remove:
    text = _STRIPPERS[part](text)
  return text


@dataclasses.dataclass
class PretrainedEncoder:
  """A pretrained model's own tokenizer (`data.tokenizer=hf`), after the `remove` stripping: texts -> ids
  int32 [N, seq_len], truncated and padded on the right with `pad_id` (the attention mask is ids != pad_id).
  Its JSON holds the whole tokenizer.json, so eval and predict encode exactly as training did."""
  tokenizer: HFTokenizer
  remove: tuple[str, ...] = ()

  @classmethod
  def fit(cls, texts, *, tokenizer_path: str, seq_len: int, remove=(), **_) -> "PretrainedEncoder":
    return cls(HFTokenizer(tokenizer_path, seq_len), parse_remove(remove))

  seq_len = property(lambda self: self.tokenizer.seq_len)
  vocab_size = property(lambda self: self.tokenizer.vocab_size)
  pad_id = property(lambda self: self.tokenizer.pad_id)

  def encode(self, texts: Sequence[str]) -> np.ndarray:
    return self.tokenizer.encode([strip(t, self.remove) for t in texts])[0]

  def token(self, token_id: int) -> str:
    """The tokenizer's token for an id (a WordPiece "##ing", a byte-level "Ġthe", "[CLS]", ...)."""
    return self.tokenizer.tokenizer.id_to_token(int(token_id))

  def to_json(self) -> dict:
    return {"type": "hf_tokenizer", "remove": list(self.remove), "tokenizer": self.tokenizer.to_json()}


def encoder_from_json(d: dict):
  """A `TextEncoder` or `PretrainedEncoder` from its `to_json()`."""
  if d.get("type") == "hf_tokenizer":
    return PretrainedEncoder(HFTokenizer.from_json(d["tokenizer"]), tuple(d["remove"]))
  return TextEncoder.from_json(d)


def fit_encoder(texts: Iterable[str], options: dict):
  """The encoder that `options` (`encoder_options`) ask for: a word/char vocabulary fitted on `texts`, or a
  pretrained tokenizer (which ignores them)."""
  kind = PretrainedEncoder if options.get("tokenizer") == PRETRAINED else TextEncoder
  return kind.fit(texts, **options)


def _settings(node) -> dict:
  """TextEncoder's settings (data.fields.Tokenizer's and Vocabulary's fields) in `node`: config.data, a
  dict of options or an encoder's JSON; a setting it lacks takes its declared default."""
  return {**dataclasses.asdict(fields.Tokenizer.read(node)), **dataclasses.asdict(fields.Vocabulary.read(node))}


def tokenizer_file(path: str) -> str:
  """The tokenizer.json that `path` (data.tokenizer_path: the file, or the model folder holding it) names;
  UserError naming the flags when there is none."""
  path = paths.expand(path)
  file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
  if not os.path.isfile(file):
    why = ("no model or tokenizer is named" if not path else f"{path} does not exist" if not os.path.exists(path)
           else f"{path} holds none")
    raise UserError(f"data.tokenizer=hf needs a tokenizer.json, but {why}; pass "
                    "--config.model.pretrained=HF_MODEL_DIR (or --config.data.tokenizer_path=FILE)")
  return file


def encoder_options(cfg) -> dict:
  """The encoder options in `config.data` (a ConfigDict or dict): what shapes a prepared copy's token ids.
  The tokenizer fields appear only when not the default, so copies prepared before they existed stay valid.
  With tokenizer='hf': the tokenizer file's path and SHA-256, seq_len and remove only."""
  options = _settings(cfg)
  options["remove"] = list(parse_remove(options["remove"]))
  if options["tokenizer"] == PRETRAINED:
    file = tokenizer_file(fields.PretrainedTokenizer.read(cfg).tokenizer_path)
    return {"tokenizer": PRETRAINED, "tokenizer_path": file, "tokenizer_sha256": records.file_sha256(file),
            "seq_len": int(options["seq_len"]), "remove": options["remove"]}
  if options["tokenizer"] == "word" and options["char_ngrams"] == 1:
    del options["tokenizer"], options["char_ngrams"]
  return options


def copy_label(options: dict) -> str:
  """`w<num_words>_l<seq_len>` of `encoder_options` (w0: a pretrained tokenizer fits no vocabulary), the
  readable part of a prepared text copy's name."""
  return f"w{0 if options.get('tokenizer') == PRETRAINED else options['num_words']}_l{options['seq_len']}"


def vocabulary_warning(encoder: TextEncoder, train: Sequence[str], validation: Sequence[str]) -> str:
  """One line when `fit` chose the tokenizer (`chosen`), or when the vocabulary cannot work: most training
  texts are a single token (text written without spaces), or most validation tokens are outside the
  vocabulary; "" otherwise (and for a pretrained tokenizer)."""
  if not isinstance(encoder, TextEncoder):
    return ""
  if encoder.chosen:
    return encoder.chosen
  fix = ("for text without spaces between words (Chinese, Japanese, Thai) pass --config.data.tokenizer=char"
         if encoder.tokenizer == "word" else "raise --config.data.num_words")
  single = np.mean([len(encoder.tokens(t)) <= 1 for t in train]) if len(train) else 0.0
  if single > 0.5:
    return f"{single:.0%} of the training texts are a single token, so the model sees one id per text; {fix}"
  tokens = [w for t in validation for w in encoder.tokens(t)]
  known = set(encoder.vocab)
  unknown = np.mean([w not in known for w in tokens]) if tokens else 0.0
  if unknown > 0.5:
    return f"{unknown:.0%} of the validation tokens are outside the vocabulary; {fix}"
  return ""


def from_builder(builder, split_names=dataset.SPLITS) -> dataset.Dataset:
  """The trainer's view of a prepared encoded-text builder (its metadata holds encoder and label names):
  those of `split_names` the builder has (no validation split when prepared with validation_fraction=0)."""
  encoder = encoder_from_json(builder.info.metadata["text_encoder"])
  names = list(builder.info.metadata["label_names"])
  if builder.info.metadata.get("warning"):
    print(f"warning: {builder.info.metadata['warning']}", file=sys.stderr)
  return dataset.Dataset(
      splits=dataset.sources(builder, split_names),
      info={"task": "classification", "num_classes": len(names), "label_names": names,
            "vocab_size": encoder.vocab_size, "seq_len": encoder.seq_len,
            **({"pad_id": encoder.pad_id} if isinstance(encoder, PretrainedEncoder) else {})},
      assets={"text_encoder": encoder.to_json(), "labels": names},
      prepared_dir=str(builder.data_dir),
  )
