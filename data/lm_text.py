"""Language-model data: a stream of bytes (vocabulary 256), or with `tokenizer=hf` of a pretrained model's
token ids (its end-of-text id between documents), cut into windows of seq_len + 1; or, from a .jsonl of
{"prompt", "completion"} rows, one example per row whose loss mask covers the completion only. A tokenizer
whose post-processor adds a BOS (Llama, Mistral, Gemma) starts each document and each row with one, and no
completion: texts are encoded without special tokens and the BOS put in front (`pieces`).

Sources: a .txt file (the whole file is one document) or a .jsonl file (one `text` field per line), split
by position into train | validation | test; or by default 20 Newsgroups: its train posts (a seeded share of
them held out as validation) and the first `test_bytes` bytes of its test posts, joined with a separator
byte in archive order as /work/shared/bench/lm_ref.py does, so "test" bits per byte compare with that reference.
`validation_fraction=0` leaves the validation split out (every training token trains). Splits are in
memory and random access; nothing is prepared on disk.
"""
import json
import pathlib
import sys
from typing import Iterable

import numpy as np
import tensorflow_datasets as tfds

from flaxforge.core import paths
from flaxforge.data import chat_sft, dataset, fields, newsgroups, preference_rows, records, splits, synthetic, text
from flaxforge.core.errors import UserError
from flaxforge.data.hf_tokenizer import HFTokenizer, prefix_ids

VOCAB_SIZE = 256


class Windows:
  """Non-overlapping windows: example i is inputs = stream[i*L : i*L+L], label = the next byte of each."""

  def __init__(self, stream: np.ndarray, seq_len: int):
    self.stream, self.seq_len = stream, seq_len

  def __len__(self) -> int:
    return max(0, (len(self.stream) - 1) // self.seq_len)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    if not -len(self) <= i < len(self):
      raise IndexError(f"window {i} of {len(self)}")
    start = (i % len(self)) * self.seq_len
    chunk = self.stream[start:start + self.seq_len + 1].astype(np.int32)
    return {"inputs": chunk[:-1], "label": chunk[1:]}


def join(docs: Iterable[bytes], separator: int) -> np.ndarray:
  return np.frombuffer(bytes([separator]).join(docs), np.uint8)


def _archive(cfg) -> pathlib.Path:
  manual_dir = fields.Archive.read(cfg).manual_dir
  if manual_dir:
    path = pathlib.Path(paths.expand(manual_dir)) / newsgroups.ARCHIVE
    if not path.is_file():
      raise UserError(f"{newsgroups.ARCHIVE} not found in {manual_dir}; download it from {newsgroups.URL} "
                      "into that folder, or fix --config.data.manual_dir")
    newsgroups.check_manual(path)
    return path
  downloads = dataset.data_dir(cfg) / "downloads"
  return pathlib.Path(newsgroups.fetch_archive(tfds.download.DownloadManager(download_dir=downloads)))


def newsgroups_streams(cfg, separator: int) -> dict[str, np.ndarray]:
  """The 20 Newsgroups train posts (a seeded share held out whole as validation) and test posts, each
  joined with `separator` in archive order."""
  archive, split = _archive(cfg), fields.Validation.read(cfg)
  train = [body.encode("latin-1") for body, _ in newsgroups.documents(archive, "train")]
  order = np.random.default_rng(split.split_seed).permutation(len(train))
  n_val = int(round(split.validation_fraction * len(train)))
  streams = {"train": join((train[i] for i in np.sort(order[n_val:])), separator),
             "validation": join((train[i] for i in np.sort(order[:n_val])), separator),
             "test": join((body.encode("latin-1") for body, _ in newsgroups.documents(archive, "test")), separator)}
  return splits.without_validation(streams, split.validation_fraction)


PROMPT, COMPLETION = "prompt", "completion"


def read_file(given: str, field: str) -> tuple[pathlib.Path, list[bytes] | None,
                                              list[tuple[int, str, str]] | None]:
  """The corpus file as (path, documents, None) or, for prompt/completion rows, (path, None, rows).

  `given` is data.path, `field` data.text_column. A .txt file is ONE document, the whole file as raw bytes:
  newlines and blank lines are ordinary text, and no end-of-text / separator is inserted anywhere in it. A
  .jsonl file is one document per line, its `field` as UTF-8; or, when its first row has a "prompt" or
  "completion" field and no `field`, supervised fine-tuning rows (line number, prompt, completion). Every row
  must match the kind the first row set: UserError names the first row that does not (not JSON, a missing
  field, a null or non-string value, an empty completion) and the fields each kind needs.
  """
  path = pathlib.Path(paths.expand(given))
  if not path.is_file():
    raise UserError(f"{given} not found; pass --config.data.path=A_TEXT_FILE (.txt or .jsonl)")
  if path.suffix.lower() == ".txt":
    return path, [path.read_bytes()], None
  if path.suffix.lower() not in (".jsonl", ".ndjson"):
    raise UserError(f"{path.name}: unknown file type {path.suffix!r}; use .txt or .jsonl")
  rows = []
  for line_num, line in enumerate(path.read_bytes().split(b"\n"), 1):
    if line.strip():
      try:
        rows.append((line_num, json.loads(line)))
      except ValueError as e:  # UnicodeDecodeError included
        raise UserError(f"{path.name} row {line_num}: not valid UTF-8 JSON ({type(e).__name__}); "
                        "fix the row") from None
  if not rows:
    raise UserError(f"{path.name} has no rows; pass --config.data.path=A_FILE_WITH_TEXT")
  first_line, first = rows[0]
  sft = isinstance(first, dict) and field not in first and (PROMPT in first or COMPLETION in first)
  sft_fields = f"string fields {PROMPT!r} and {COMPLETION!r} (not empty)"
  corpus_field = f"a string field {field!r} (--config.data.text_column=NAME for another name)"
  need = (f"row {first_line} has {PROMPT!r} or {COMPLETION!r}, so every row is a fine-tuning row and needs "
          f"{sft_fields}; a corpus instead needs {corpus_field} in every row; fix the row" if sft else
          f"every row of a corpus needs {corpus_field}; fine-tuning rows instead need {sft_fields} from row "
          f"{first_line} on; fix the row")

  def value(line_num, row, key):
    if not isinstance(row, dict):
      raise UserError(f"{path.name} row {line_num}: expected a JSON object, found {_shown(row)}; {need}")
    if key not in row:
      raise UserError(f"{path.name} row {line_num}: field {key!r} not found; {need}")
    if not isinstance(row[key], str) or (key == COMPLETION and not row[key]):
      raise UserError(f"{path.name} row {line_num}: {key!r} is {_shown(row[key])}; {need}")
    return row[key]

  if sft:
    return path, None, [(n, value(n, row, PROMPT), value(n, row, COMPLETION)) for n, row in rows]
  return path, [value(n, row, field).encode("utf-8") for n, row in rows], None


def _shown(value) -> str:
  shown = json.dumps(value)
  return shown if len(shown) <= 40 else shown[:37] + "..."


def file_streams(docs: list[bytes], separator: int, encode, validation: float,
                 test: float) -> tuple[dict[str, np.ndarray], float]:
  """`docs` joined with `separator` (bytes; or token ids through `encode`, str -> ids as a document starts, if
  not None), split by position into train | validation | test (`splits.by_position`); and the train split's
  UTF-8 bytes per token (1.0 for bytes; through `encode`, text bytes over tokens with the separators counted as
  tokens of no bytes, a document cut by the split boundary counted pro rata)."""
  if encode is None:
    stream = join(docs, separator)
  else:
    ids = [np.asarray(encode(d.decode("utf-8", errors="replace")), np.int32) for d in docs]
    stream = np.concatenate([part for doc in ids for part in (doc, [separator])][:-1]).astype(np.int32)
  streams = {name: stream[a:b] for name, (a, b) in splits.by_position(len(stream), validation, test).items()}
  if encode is None:
    return streams, 1.0
  doc_tokens = np.array([len(doc) for doc in ids], np.float64)
  starts = np.concatenate([[0.0], np.cumsum(doc_tokens + 1)[:-1]])
  n_train = len(streams["train"])
  in_train = np.clip(n_train - starts, 0, doc_tokens) / np.maximum(doc_tokens, 1)
  train_bytes = float(np.dot(in_train, [len(d) for d in docs]))
  return streams, (train_bytes / n_train if train_bytes and n_train else 1.0)


def sft_examples(name: str, rows: list[tuple[int, str, str]], prefix: list[int], encode, pad_id: int, seq_len: int,
                 validation: float, test: float) -> tuple[dict[str, "synthetic.ArraySource"], float]:
  """Supervised fine-tuning `rows` (line number, prompt, completion) as examples: `prefix` (the tokenizer's BOS,
  if it adds one) + prompt + completion + end-of-text (`pad_id`), prompt and completion encoded by `encode`
  without special tokens, so a BOS starts the row once and never a completion; truncated and right-padded to
  seq_len + 1 tokens. `loss_mask` [seq_len] is 1 where the label is a completion token (the end-of-text
  included), 0 on the prompt and padding. Rows split by position into train | validation | test
  (`splits.by_position`). Also the train rows' completion UTF-8 bytes per loss token (a completion cut by
  seq_len counted pro rata).

  UserError when a split's prompts leave no completion token within seq_len; a warning on stderr with the
  count when only some rows lose their whole completion."""
  n = len(rows)
  ids = np.full((n, seq_len + 1), pad_id, np.int32)
  loss_mask = np.zeros((n, seq_len), np.float32)
  completion_bytes = np.zeros(n)
  for i, (_, prompt_text, completion_text) in enumerate(rows):
    prompt, completion = list(prefix) + list(encode(prompt_text)), list(encode(completion_text)) + [pad_id]
    tokens = (prompt + completion)[:seq_len + 1]
    ids[i, :len(tokens)] = tokens
    loss_mask[i, max(len(prompt) - 1, 0):len(tokens) - 1] = 1.0
    kept = min(max(len(tokens) - len(prompt), 0), len(completion) - 1)
    completion_bytes[i] = len(completion_text.encode("utf-8")) * kept / max(len(completion) - 1, 1)
  bounds = splits.by_position(n, validation, test)
  lost = loss_mask.sum(1) == 0
  for split, (a, b) in bounds.items():
    if b > a and lost[a:b].all():
      raise UserError(f"{name}: data.seq_len={seq_len} leaves no completion tokens after the prompt in "
                      f"{int(lost.sum())} of {n} rows, all {b - a} of the {split} split; raise "
                      "--config.data.seq_len or shorten the prompts")
  if lost.any():
    print(f"warning: {name}: data.seq_len={seq_len} leaves no completion tokens after the prompt in "
          f"{int(lost.sum())} of {n} rows; they add nothing to the loss", file=sys.stderr)
  _, end = bounds["train"]
  train_tokens, train_bytes = float(loss_mask[:end].sum()), float(completion_bytes[:end].sum())
  examples = {split: synthetic.ArraySource(inputs=ids[a:b, :-1], label=ids[a:b, 1:], loss_mask=loss_mask[a:b])
              for split, (a, b) in bounds.items()}
  return examples, (train_bytes / train_tokens if train_bytes else 1.0)


def pieces(tokenizer: dict) -> tuple[list[int], object]:
  """A run's stored `tokenizer` asset as (the ids that start a row or document: a Hugging Face tokenizer's
  BOS, if its post-processor adds one (`hf_tokenizer.prefix_ids`), else none; encode: str -> list of ids,
  without special tokens). Raises UserError for a type it does not know."""
  if tokenizer.get("type") == "bytes":
    return [], lambda t: list(t.encode("utf-8"))
  if tokenizer.get("type") == "hf_tokenizer":
    raw = _untruncated(tokenizer)
    return prefix_ids(raw), lambda t: raw.encode(t, add_special_tokens=False).ids
  raise UserError(f"tokenizer {tokenizer.get('type')!r} is not supported for generation")


def codec(tokenizer: dict):
  """A run's stored `tokenizer` asset as (encode: str -> list of ids as a row or document starts, its BOS
  first (`pieces`); decode: ids -> str; the end-of-text id, also the separator that starts an empty prompt).
  Raises UserError for a type it does not know."""
  prefix, encode = pieces(tokenizer)
  if tokenizer.get("type") == "bytes":
    return (encode, lambda ids: bytes(int(i) for i in ids).decode("utf-8", "replace"),
            tokenizer.get("separator", 0))
  raw = _untruncated(tokenizer)
  return (lambda t: prefix + encode(t), lambda ids: raw.decode([int(i) for i in ids]),
          text.encoder_from_json(tokenizer).pad_id)


def _untruncated(tokenizer: dict):
  """The `tokenizers.Tokenizer` of an hf_tokenizer asset, for whole documents: no truncation or padding."""
  raw = text.encoder_from_json(tokenizer).tokenizer.tokenizer
  raw.no_truncation()
  raw.no_padding()
  return raw


def load(cfg) -> dataset.Dataset:
  """`cfg` is `config.data` (data.fields.Corpus, ByteTokens or PretrainedTokenizer, Validation, Test, and
  Archive for 20 Newsgroups): the corpus at `path` (see `read_file`), else 20 Newsgroups, as windows of
  seq_len + 1 tokens (test_fraction applies to files only; test_bytes cuts the test stream).

  info["bytes_per_token"] (what bits_per_byte divides by, for every split) is measured on the train split:
  1.0 for a byte corpus, else its UTF-8 text bytes per token (see `file_streams` and `sft_examples`).
  `source` is the file's path and SHA-256, so a resumed run refuses an edited file. UserError for a bad
  file (`read_file`), a split too small for one example, or completions that seq_len cuts off entirely."""
  conversations = chat_sft.load(cfg) or preference_rows.load(cfg)  # chat or preference rows, else None
  if conversations is not None:
    return conversations
  corpus, separator = fields.Corpus.read(cfg), fields.ByteTokens.read(cfg).separator
  fractions = fields.Validation.read(cfg).validation_fraction, fields.Test.read(cfg).test_fraction
  seq_len, vocab_size, encode = corpus.seq_len, VOCAB_SIZE, None
  tokenizer = {"type": "bytes", "vocab_size": VOCAB_SIZE, "separator": separator}
  if corpus.tokenizer == text.PRETRAINED:
    if not corpus.path:
      raise UserError("data.tokenizer=hf reads your corpus; pass --config.data.path=corpus.txt (or .jsonl)")
    file = text.tokenizer_file(fields.PretrainedTokenizer.read(cfg).tokenizer_path)
    encoder = text.PretrainedEncoder(HFTokenizer(file, seq_len))
    vocab_size, tokenizer = encoder.vocab_size, encoder.to_json()
    encode, _, separator = codec(tokenizer)  # whole documents: no truncation or padding
  parts, streams, source, bytes_per_token = None, {}, {}, 1.0
  if corpus.path:
    path, docs, rows = read_file(corpus.path, corpus.text_column)
    source = {"path": str(path), "sha256": records.file_sha256(path)}
    if rows is None:
      streams, bytes_per_token = file_streams(docs, separator, encode, *fractions)
    else:
      parts, bytes_per_token = sft_examples(path.name, rows, *pieces(tokenizer), separator, seq_len, *fractions)
  else:
    streams = newsgroups_streams(cfg, separator)
  if corpus.test_bytes and "test" in streams:
    streams["test"] = streams["test"][:corpus.test_bytes]
  parts = parts or {name: Windows(stream, seq_len) for name, stream in streams.items()}
  for name, examples in parts.items():
    if not len(examples) and not streams:
      raise UserError(f"the {name} split has no rows; add rows, or change --config.data.validation_fraction "
                      "or --config.data.test_fraction")
    if not len(examples):
      raise UserError(f"the {name} split has {len(streams[name])} tokens, less than one window of "
                      f"seq_len + 1 = {seq_len + 1}; use more text or lower --config.data.seq_len")
  return dataset.Dataset(
      splits=parts,
      info={"task": "lm", "vocab_size": vocab_size, "seq_len": seq_len, "bytes_per_token": bytes_per_token},
      assets={"tokenizer": tokenizer},
      source=source,
  )
