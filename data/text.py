"""Text to token ids, exactly as Keras' `Tokenizer` + `pad_sequences` do it, saved as JSON beside the checkpoint.

`TextEncoder.fit(texts, ...)` builds a top-N word vocabulary from the training texts; `encode(texts)` maps any
texts to an int32 [N, seq_len] array; `to_json()`/`from_json()` carry every option, so eval and predict
apply exactly what training applied. Also: scikit-learn's newsgroup header/footer/quote stripping, label
names <-> ids, and a seeded stratified hold-out split (`validation_fraction=0`: no validation split).
"""
import collections
import dataclasses
import os
import re
from typing import Iterable, Sequence

import numpy as np

from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.data import records
from flaxforge.data.hf_tokenizer import HFTokenizer

KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
REMOVABLE = ("headers", "footers", "quotes")
PADDING_SIDES = ("pre", "post")
TOKENIZERS = ("word", "char")  # char: Unicode characters (for text without spaces), plus 2..char_ngrams-grams
PRETRAINED = "hf"  # data.tokenizer: a pretrained model's own tokenizer.json (data.tokenizer_path)

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
  of training-set frequency, ties broken by first occurrence. All ids are < `num_words`."""
  vocab: list[str]
  seq_len: int = 100
  num_words: int = 10000
  lowercase: bool = True
  filters: str = KERAS_FILTERS
  remove: tuple[str, ...] = ()
  oov: bool = False
  cls_token: bool = False  # position 0 of every row holds a [CLS] id (the id after padding and OOV)
  bigrams: bool = False
  padding: str = "pre"
  truncating: str = "pre"
  tokenizer: str = "word"
  char_ngrams: int = 1

  def __post_init__(self):
    self.remove = parse_remove(self.remove)
    if self.tokenizer not in TOKENIZERS or self.char_ngrams < 1:
      raise UserError(f"data.tokenizer must be one of {', '.join(TOKENIZERS)} and data.char_ngrams >= 1; got "
                      f"{self.tokenizer!r} and {self.char_ngrams}")
    for name in ("padding", "truncating"):
      if getattr(self, name) not in PADDING_SIDES:
        raise UserError(f"data.{name} must be 'pre' or 'post', not {getattr(self, name)!r}")
    if self.seq_len < 1 or self.num_words < 2 + self.oov:
      raise UserError(f"need data.seq_len >= 1 and data.num_words >= {2 + self.oov}; "
                      f"got {self.seq_len} and {self.num_words}")
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
    encoder = cls(vocab=[], **options)
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
    words = [w for w in text.translate(self._table).split(" ") if w]
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
    d = dataclasses.asdict(self)
    d["remove"] = list(self.remove)
    return {"type": "word_encoder", **d}

  @classmethod
  def from_json(cls, d: dict) -> "TextEncoder":
    d = dict(d)
    if d.pop("type", "word_encoder") != "word_encoder":
      raise UserError(f"not a word encoder: type {d.get('type')!r}")
    return cls(**d)


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


@dataclasses.dataclass(frozen=True)
class LabelEncoder:
  """Label names <-> class ids; ids are positions in `names`."""
  names: tuple[str, ...]

  def encode(self, values: Iterable) -> np.ndarray:
    index = {n: i for i, n in enumerate(self.names)}
    try:
      return np.array([index[str(v)] for v in values], np.int32)
    except KeyError as e:
      raise UserError(f"unknown label {e.args[0]!r}; known labels are: {', '.join(self.names)}") from None

  def decode(self, ids: Iterable[int]) -> list[str]:
    return [self.names[int(i)] for i in ids]

  def to_json(self) -> list[str]:
    return list(self.names)

  @classmethod
  def from_json(cls, names: Sequence[str]) -> "LabelEncoder":
    return cls(tuple(names))


def encoder_options(cfg) -> dict:
  """The `TextEncoder` options in `config.data` (a ConfigDict or dict), with the encoder's defaults.
  The tokenizer fields appear only when not the default, so copies prepared before they existed stay valid.
  With tokenizer='hf': the tokenizer file's path and SHA-256, seq_len and remove only."""
  if cfg.get("tokenizer", "word") == PRETRAINED:
    path = paths.expand(cfg.get("tokenizer_path", "") or "")
    file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    if not os.path.isfile(file):
      why = ("no model or tokenizer is named" if not path else f"{path} does not exist" if not os.path.exists(path)
             else f"{path} holds none")
      raise UserError(f"data.tokenizer=hf needs a tokenizer.json, but {why}; pass "
                      "--config.model.pretrained=HF_MODEL_DIR (or --config.data.tokenizer_path=FILE)")
    return {"tokenizer": PRETRAINED, "tokenizer_path": file, "tokenizer_sha256": records.file_sha256(file),
            "seq_len": int(cfg.get("seq_len")), "remove": list(parse_remove(cfg.get("remove", "")))}
  options = {f.name: cfg.get(f.name, f.default) for f in dataclasses.fields(TextEncoder) if f.name != "vocab"}
  options["remove"] = list(parse_remove(options["remove"]))
  if options["tokenizer"] == "word" and options["char_ngrams"] == 1:
    del options["tokenizer"], options["char_ngrams"]
  return options


def vocabulary_warning(encoder: TextEncoder, train: Sequence[str], validation: Sequence[str]) -> str:
  """One line when the vocabulary cannot work: most training texts are a single token (text written
  without spaces), or most validation tokens are outside the vocabulary; "" otherwise (and for a
  pretrained tokenizer)."""
  if not isinstance(encoder, TextEncoder):
    return ""
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


def label_encoder(values: Iterable) -> LabelEncoder:
  """Names = the sorted distinct values as strings (numerically sorted when all are integers)."""
  names = {str(v) for v in values}
  numeric = all(re.fullmatch(r"[+-]?\d+", n) for n in names)
  return LabelEncoder(tuple(sorted(names, key=int if numeric else None)))


def holdout(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
  """Seeded, stratified split of indices: one array per fraction, then the rest (sorted indices).

  Each class gives round(fraction * its size) examples to each held-out part, so small classes may give none.
  A part's examples depend only on the seed and the fractions before it: the builders pass the test fraction
  first, so a refit (validation fraction 0) tests on the same examples as the run that chose its settings.
  """
  rng = np.random.default_rng(seed)
  parts = [[] for _ in range(len(fractions) + 1)]
  for c in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == c))
    start = 0
    for part, fraction in zip(parts, fractions):
      n = int(round(fraction * len(idx)))
      part.append(idx[start:start + n])
      start += n
    parts[-1].append(idx[start:])
  return [np.sort(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]


def without_validation(parts: dict, validation_fraction: float) -> dict:
  """`parts` (split name -> row indices, or a token stream's (start, end) bounds) without its "validation"
  entry when `validation_fraction` is 0: no validation split, so every training row trains (a refit after
  choosing settings on validation); the caller has held none out. The builders then write no such split
  (TFDS cannot write an empty one). A positive fraction is kept as is."""
  if validation_fraction == 0:
    return {name: part for name, part in parts.items() if name != "validation"}
  return parts


def refuse_empty(parts: dict, where: str, size: str, add: str = "") -> None:
  """One-line UserError for the first split in `parts` with no rows, naming the fix: `add` ("add rows"),
  else the fraction to change (a validation split can also be left out with validation_fraction=0)."""
  for name, idx in parts.items():
    if len(idx):
      continue
    if name == "train":
      fix = "lower --config.data.validation_fraction" + (" or --config.data.test_fraction" if "test" in parts else "")
    else:
      fix = f"raise --config.data.{name}_fraction"
      if name == "validation":
        fix += " (or set it to 0 to train on every training row without a validation split)"
    raise UserError(f"{where}: the {name} split is empty ({size}); {f'{add} or ' if add else ''}{fix}")
