"""Chat supervised fine-tuning data: a .jsonl of `{"messages": [{"role", "content"}, ...]}` rows (the
OpenAI / Hugging Face format), rendered and tokenized by the model's own chat template (data/chat.py), the
loss on the assistant's turns (`data.loss_on=assistant`) or on every token (`all`).

`load` is one of lm_text's hooks: it answers for a .jsonl whose first row holds `messages` and returns
None for every other file (preference pairs are data/preference_rows.py's; lm_text reads the rest). A bad
row (not an object, a message without a role, a turn with no content) is a one-line UserError naming the
row, or with `data.bad_rows=drop` dropped and counted (`dropped_rows` in the run's info). The run stores the
template (assets/chat_template.json) beside its tokenizer, so generate and serve need only the work
directory.
"""
import json
import pathlib
import sys

import numpy as np
import tokenizers

from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.data import chat, dataset, fields, records, splits, synthetic, text
from flaxforge.data.hf_tokenizer import HFTokenizer

CHAT = "messages"


def _first_row(path: pathlib.Path):
  with open(path, "rb") as f:
    for line in f:
      if line.strip():
        try:
          return json.loads(line)
        except ValueError:
          return None  # lm_text names the row
  return None


def read_rows(path: pathlib.Path) -> list[tuple[int, object]]:
  """(line number, parsed JSON) of every non-empty line; UserError naming a line that is not JSON."""
  rows = []
  for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
    if line.strip():
      try:
        rows.append((number, json.loads(line)))
      except ValueError as e:
        raise UserError(f"{path.name} row {number}: not valid UTF-8 JSON ({type(e).__name__}); fix the row") from None
  return rows


def template_and_encoder(cfg, *, required: bool = True):
  """(the model's chat template, or None when it has none and `required` is False; its tokenizer as a
  text.PretrainedEncoder; the raw tokenizers.Tokenizer without truncation or padding), from the folder of
  data.tokenizer_path (model.pretrained's)."""
  if fields.Corpus.read(cfg).tokenizer != text.PRETRAINED:
    raise UserError("chat and preference rows are tokenized by the model's own tokenizer; pass "
                    "--config.data.tokenizer=hf and --config.model.pretrained=HF_MODEL_DIR")
  file = text.tokenizer_file(fields.PretrainedTokenizer.read(cfg).tokenizer_path)
  encoder = text.PretrainedEncoder(HFTokenizer(file, fields.Corpus.read(cfg).seq_len))
  raw = tokenizers.Tokenizer.from_file(file)
  raw.no_truncation()
  raw.no_padding()
  try:
    template = chat.ChatTemplate(str(pathlib.Path(file).parent))
  except UserError:
    if required:
      raise
    template = None
  return template, encoder, raw


def each_good(name: str, rows, encode, bad_rows: str):
  """(line, encode(row)) for each row, a UserError from `encode` raised with the row named, or with
  bad_rows="drop" skipped; also returns the count dropped (a list, filled as the rows are consumed)."""
  dropped = [0]

  def good():
    for number, row in rows:
      try:
        yield number, encode(row)
      except UserError as e:
        if bad_rows != "drop":
          raise UserError(f"{name} row {number}: {e} (or pass --config.data.bad_rows=drop)") from None
        dropped[0] += 1
  return good(), dropped


def padded(ids, mask, seq_len: int, pad_id: int) -> dict[str, np.ndarray]:
  """A token sequence and its per-token loss mask as a next-token example of seq_len positions: truncated,
  padded with pad_id (mask 0); loss_mask [seq_len] marks the label tokens the loss counts."""
  ids, mask = np.asarray(ids, np.int32)[:seq_len + 1], np.asarray(mask, np.float32)[:seq_len + 1]
  full = np.full(seq_len + 1, pad_id, np.int32)
  full[:len(ids)] = ids
  loss = np.zeros(seq_len + 1, np.float32)
  loss[:len(mask)] = mask
  return {"inputs": full[:-1], "label": full[1:], "loss_mask": loss[1:]}


def check_kept(name: str, lost: np.ndarray, bounds: dict, seq_len: int, what: str):
  """UserError when seq_len cuts every row of a split down to no loss token; a warning when it cuts some."""
  for split, (a, b) in bounds.items():
    if b > a and lost[a:b].all():
      raise UserError(f"{name}: data.seq_len={seq_len} leaves no {what} tokens in all {b - a} rows of the {split} "
                      "split; raise --config.data.seq_len")
  if lost.any():
    print(f"warning: {name}: data.seq_len={seq_len} leaves no {what} tokens in {int(lost.sum())} of {len(lost)} "
          "rows; they add nothing to the loss", file=sys.stderr)


def jsonl_file(cfg, keys) -> tuple[pathlib.Path, dict] | None:
  """(data.path, its first row) when data.path is a .jsonl whose first row is an object with one of `keys`."""
  given = fields.Corpus.read(cfg).path
  path = pathlib.Path(paths.expand(given)) if given else None
  if path is None or path.suffix.lower() not in (".jsonl", ".ndjson") or not path.is_file():
    return None
  first = _first_row(path)
  return (path, first) if isinstance(first, dict) and any(k in first for k in keys) else None


def load(cfg) -> dataset.Dataset | None:
  """`cfg` is `config.data`: the chat rows of data.path as a Dataset, or None when its first row holds no
  `messages` (see the module docstring)."""
  found = jsonl_file(cfg, (CHAT,))
  if found is None:
    return None
  path, _ = found
  source = {"path": str(path), "sha256": records.file_sha256(path)}
  template, encoder, _ = template_and_encoder(cfg)
  options, seq_len = fields.Chat.read(cfg), fields.Corpus.read(cfg).seq_len

  def encode(row):
    if not isinstance(row, dict) or CHAT not in row:
      raise UserError(f"expected an object with {CHAT!r}, as row 1 has; write every row as "
                      "{\"messages\": [{\"role\": ..., \"content\": ...}, ...]}")
    return template.encode(row[CHAT], loss_on=options.loss_on)

  good, dropped = each_good(path.name, read_rows(path), encode, options.bad_rows)
  examples = [padded(ids, mask, seq_len, encoder.pad_id) for _, (ids, mask) in good]
  arrays, bounds = stacked_splits(path.name, examples, dropped, cfg)
  check_kept(path.name, arrays["loss_mask"].sum(1) == 0, bounds, seq_len, "assistant")
  _, end = bounds["train"]
  kept = arrays["label"][:end][arrays["loss_mask"][:end] > 0]
  loss_bytes = len(template.tokenizer.decode(kept.tolist(), skip_special_tokens=False).encode("utf-8"))
  info = {"task": "lm", "vocab_size": encoder.vocab_size, "seq_len": seq_len,
          "bytes_per_token": loss_bytes / max(len(kept), 1) or 1.0}
  if dropped[0]:
    info["dropped_rows"] = dropped[0]
    print(f"{path.name}: dropped {dropped[0]} bad rows (data.bad_rows=drop)", file=sys.stderr)
  return dataset.Dataset(
      splits={s: synthetic.ArraySource(**{k: v[a:b] for k, v in arrays.items()}) for s, (a, b) in bounds.items()},
      info=info, assets={"tokenizer": encoder.to_json(), "chat_template": template.to_json()}, source=source)


def stacked_splits(name: str, examples: list[dict], dropped: list, cfg) -> tuple[dict, dict]:
  """(each key of `examples` stacked over them, each split's (start, end) by position) for the good rows of
  file `name`; UserError when every row was bad (`dropped[0]` of them) or a split would be empty."""
  if not examples:
    raise UserError(f"{name}: every row is bad ({dropped[0]} dropped); fix the rows")
  arrays = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
  bounds = splits.by_position(len(examples), fields.Validation.read(cfg).validation_fraction,
                              fields.Test.read(cfg).test_fraction)
  splits.refuse_empty({s: range(a, b) for s, (a, b) in bounds.items()}, name, f"{len(examples)} rows", "add rows")
  return arrays, bounds
