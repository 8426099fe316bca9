"""Language-model data: a stream of bytes (vocabulary 256), or with `tokenizer=hf` of a pretrained model's
token ids (its end-of-text id between documents), cut into windows of seq_len + 1; or, from a .jsonl of
{"prompt", "completion"} rows, one example per row whose loss mask covers the completion only.

Sources: a .txt file (the whole file) or a .jsonl file (one `text` field per line), split by position into
train | validation | test; or by default 20 Newsgroups: its train posts (a seeded share of them held out as
validation) and the first `test_bytes` bytes of its test posts, joined with a separator byte in archive
order as /work/shared/bench/lm_ref.py does, so "test" bits per byte compare with that reference.
Splits are in memory and random access; nothing is prepared on disk.
"""
import json
import pathlib
from typing import Iterable

import numpy as np
import tensorflow_datasets as tfds

from flaxforge.core import paths
from flaxforge.data import dataset, newsgroups, synthetic, text
from flaxforge.core.errors import UserError

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
  manual_dir = cfg.get("manual_dir", "")
  if manual_dir:
    path = pathlib.Path(paths.expand(manual_dir)) / newsgroups.ARCHIVE
    if not path.is_file():
      raise UserError(f"{newsgroups.ARCHIVE} not found in {manual_dir}; download it from {newsgroups.URL} "
                      "into that folder, or fix --config.data.manual_dir")
    newsgroups.check_manual(path)
    return path
  downloads = dataset.data_dir(cfg.get("data_dir", "")) / "downloads"
  return pathlib.Path(newsgroups.fetch_archive(tfds.download.DownloadManager(download_dir=downloads)))


def newsgroups_streams(cfg, separator: int) -> dict[str, np.ndarray]:
  archive = _archive(cfg)
  train = [body.encode("latin-1") for body, _ in newsgroups.documents(archive, "train")]
  order = np.random.default_rng(cfg.get("split_seed", 0)).permutation(len(train))
  n_val = int(round(cfg.get("validation_fraction", 0.1) * len(train)))
  test = join((body.encode("latin-1") for body, _ in newsgroups.documents(archive, "test")), separator)
  test_bytes = cfg.get("test_bytes", 200_000)
  return {"train": join((train[i] for i in np.sort(order[n_val:])), separator),
          "validation": join((train[i] for i in np.sort(order[:n_val])), separator),
          "test": test[:test_bytes] if test_bytes else test}


def file_documents(cfg) -> list[bytes]:
  """The corpus file's documents as UTF-8: a .txt file is one document, a .jsonl file one per line."""
  path = pathlib.Path(paths.expand(cfg.get("path")))
  if not path.is_file():
    raise UserError(f"{cfg.get('path')} not found; pass --config.data.path=A_TEXT_FILE (.txt or .jsonl)")
  if path.suffix.lower() == ".txt":
    return [path.read_bytes()]
  if path.suffix.lower() in (".jsonl", ".ndjson"):
    field, docs = cfg.get("text_column", "text"), []
    for line_num, line in enumerate(path.read_bytes().split(b"\n"), 1):
      if line.strip():
        try:
          docs.append(json.loads(line)[field].encode("utf-8"))
        except (ValueError, KeyError, TypeError, AttributeError):
          raise UserError(f"{path.name} row {line_num}: expected a JSON object with a string field {field!r}; "
                          "pass --config.data.text_column=...") from None
    return docs
  raise UserError(f"{path.name}: unknown file type {path.suffix!r}; use .txt or .jsonl")


def file_streams(cfg, separator: int, encode=None) -> dict[str, np.ndarray]:
  """The file's documents joined with `separator` (bytes; or token ids through `encode`, str -> ids),
  split by position into train | validation | test."""
  docs = file_documents(cfg)
  if encode is None:
    stream = join(docs, separator)
  else:
    ids = [np.asarray(encode(d.decode("utf-8", errors="replace")), np.int32) for d in docs]
    stream = np.concatenate([part for doc in ids for part in (doc, [separator])][:-1]).astype(np.int32)
  n = len(stream)
  val, test = int(cfg.get("validation_fraction", 0.1) * n), int(cfg.get("test_fraction", 0.1) * n)
  streams = {"train": stream[:n - val - test], "validation": stream[n - val - test:n - test],
             "test": stream[n - test:]}
  test_bytes = cfg.get("test_bytes", 0)
  if test_bytes:
    streams["test"] = streams["test"][:test_bytes]
  return streams


def sft_examples(cfg, encode, pad_id: int, seq_len: int) -> dict[str, "synthetic.ArraySource"] | None:
  """Supervised fine-tuning rows, when the corpus is a .jsonl of {"prompt", "completion"} objects (else
  None): prompt + completion + end-of-text, truncated and right-padded to seq_len + 1 tokens; `loss_mask`
  [seq_len] is 1 where the label is a completion token (the end-of-text included), 0 on the prompt and
  padding. Rows split by position into train | validation | test."""
  path = pathlib.Path(paths.expand(cfg.get("path")))
  if path.suffix.lower() not in (".jsonl", ".ndjson"):
    return None
  rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
  if not rows or not all(isinstance(r, dict) and "prompt" in r and "completion" in r for r in rows):
    return None
  ids = np.full((len(rows), seq_len + 1), pad_id, np.int32)
  loss_mask = np.zeros((len(rows), seq_len), np.float32)
  for i, row in enumerate(rows):
    prompt, completion = list(encode(row["prompt"])), list(encode(row["completion"])) + [pad_id]
    tokens = (prompt + completion)[:seq_len + 1]
    ids[i, :len(tokens)] = tokens
    loss_mask[i, max(len(prompt) - 1, 0):len(tokens) - 1] = 1.0
  n = len(rows)
  val, test = int(cfg.get("validation_fraction", 0.1) * n), int(cfg.get("test_fraction", 0.1) * n)
  bounds = {"train": (0, n - val - test), "validation": (n - val - test, n - test), "test": (n - test, n)}
  return {name: synthetic.ArraySource(inputs=ids[a:b, :-1], label=ids[a:b, 1:], loss_mask=loss_mask[a:b])
          for name, (a, b) in bounds.items()}


def _pretrained_tokenizer(cfg):
  """data.tokenizer=hf: the model's own tokenizer (whole documents, no truncation or padding), its stored
  form, and its separator (the end-of-text / padding id)."""
  if not cfg.get("path", ""):
    raise UserError("data.tokenizer=hf reads your corpus; pass --config.data.path=corpus.txt (or .jsonl)")
  encoder = text.PretrainedEncoder.fit((), **text.encoder_options(cfg))
  encode, _, separator = codec(encoder.to_json())
  return encode, encoder, separator


def codec(tokenizer: dict):
  """A run's stored `tokenizer` asset as (encode: str -> list of ids, decode: ids -> str, the separator id
  that starts an empty prompt). Raises UserError for a type it does not know."""
  if tokenizer.get("type") == "bytes":
    return (lambda t: list(t.encode("utf-8")), lambda ids: bytes(int(i) for i in ids).decode("utf-8", "replace"),
            tokenizer.get("separator", 0))
  if tokenizer.get("type") == "hf_tokenizer":
    encoder = text.encoder_from_json(tokenizer)
    raw = encoder.tokenizer.tokenizer
    raw.no_truncation()
    raw.no_padding()
    return (lambda t: raw.encode(t).ids, lambda ids: raw.decode([int(i) for i in ids]), encoder.pad_id)
  raise UserError(f"tokenizer {tokenizer.get('type')!r} is not supported for generation")


def load(cfg) -> dataset.Dataset:
  """`cfg` is `config.data`: seq_len (256), path ('' = 20 Newsgroups), text_column ('text', for .jsonl),
  validation_fraction (0.1), test_fraction (0.1, files only), test_bytes (200,000 for 20 Newsgroups,
  0 = all for files), split_seed (0), separator (0), manual_dir and data_dir (20 Newsgroups)."""
  seq_len, separator = cfg.get("seq_len", 256), cfg.get("separator", 0)
  vocab_size, tokenizer, splits = VOCAB_SIZE, {"type": "bytes", "vocab_size": VOCAB_SIZE, "separator": separator}, None
  if cfg.get("tokenizer", "") == text.PRETRAINED:
    encode, encoder, separator = _pretrained_tokenizer(cfg)
    vocab_size, tokenizer = encoder.vocab_size, encoder.to_json()
    splits = sft_examples(cfg, encode, separator, seq_len)
    streams = file_streams(cfg, separator, encode) if splits is None else {}
  elif cfg.get("path", ""):
    streams = file_streams(cfg, separator)
  else:
    streams = newsgroups_streams(cfg, separator)
  splits = splits or {name: Windows(stream, seq_len) for name, stream in streams.items()}
  for name, examples in splits.items():
    if not len(examples):
      raise UserError(f"the {name} split has {len(streams.get(name, ()))} tokens, less than one window of "
                      f"seq_len + 1 = {seq_len + 1}; use more text or lower --config.data.seq_len")
  return dataset.Dataset(
      splits=splits,
      info={"task": "lm", "vocab_size": vocab_size, "seq_len": seq_len,
            **({"bytes_per_token": 1.0} if tokenizer["type"] == "bytes" else {})},
      assets={"tokenizer": tokenizer},
  )
