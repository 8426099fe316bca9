"""Preference pairs for DPO and its relatives: a .jsonl of `{"prompt", "chosen", "rejected"}` rows, plain text
or chat (TRL's two formats: a prompt string with completion strings, or a prompt list of messages with
completions that are a string or a list of assistant messages).

Plain rows are the prompt's tokens (with the tokenizer's special tokens, e.g. a BOS) then the completion's
(without) and the end-of-text id, as prompt/completion SFT writes them; chat rows are rendered by the model's
chat template (data/chat.py). Each row gives both sequences as next-token examples of seq_len positions:
`chosen_inputs`, `chosen_label`, `chosen_loss_mask` (1 on the completion's label tokens) and the same for
`rejected`. A pair with no completion token left within seq_len, or whose completions seq_len cuts to the
same tokens, is a bad row, as are a missing field, an empty completion and `chosen` equal to `rejected`
(data.bad_rows: error or drop).
"""
import sys

import numpy as np

from flaxforge.core.errors import UserError
from flaxforge.data import chat_sft, dataset, fields, records, synthetic

FIELDS = ("prompt", "chosen", "rejected")


def _messages(value, name):
  """A chat completion as a list of assistant messages."""
  if isinstance(value, str):
    return [{"role": "assistant", "content": value}]
  if isinstance(value, list):
    return value
  raise UserError(f"{name!r} must be a string or a list of messages, not {type(value).__name__}")


def encoder_of(template, encoder, tokenizer, seq_len: int):
  """row -> the pair's arrays (chat_sft.padded's, prefixed chosen_ and rejected_); UserError for a bad row.
  `template` None: plain-text rows only."""
  end = encoder.pad_id

  def encode(row):
    if not isinstance(row, dict) or any(k not in row for k in FIELDS):
      missing = [k for k in FIELDS if not isinstance(row, dict) or k not in row]
      raise UserError(f"field {missing[0]!r} not found; preference rows need {', '.join(map(repr, FIELDS))}")
    prompt, chosen, rejected = (row[k] for k in FIELDS)
    for name, value in (("chosen", chosen), ("rejected", rejected)):
      if value in ("", [], None):
        raise UserError(f"{name!r} is empty; give both completions text")
    if chosen == rejected:
      raise UserError("'chosen' equals 'rejected', so the pair prefers nothing; fix or drop the row")
    pair = []
    for name, completion in (("chosen", chosen), ("rejected", rejected)):
      if isinstance(prompt, list) and template is None:
        raise UserError("chat rows need the model's chat template, and the model has none; write the rows as "
                        "plain text, or add chat_template.jinja to the model folder")
      if isinstance(prompt, list):
        ids, mask = template.encode(prompt + _messages(completion, name))
        start = len(template.prompt_ids(prompt))
        mask[:start] = 0  # earlier assistant turns are prompt
      elif isinstance(prompt, str) and isinstance(completion, str):
        head = tokenizer.encode(prompt).ids
        tail = tokenizer.encode(completion, add_special_tokens=False).ids + [end]
        ids, mask = head + tail, [0] * len(head) + [1] * len(tail)
      else:
        raise UserError("a plain-text prompt needs string completions; write all three as text, or the prompt "
                        "as a list of messages")
      example = chat_sft.padded(ids, mask, seq_len, end)
      if not example["loss_mask"].any():
        raise UserError(f"data.seq_len={seq_len} leaves no {name} token after the prompt; raise "
                        "--config.data.seq_len or shorten the prompt")
      pair.append({f"{name}_{k}": v for k, v in example.items()})
    if all(np.array_equal(pair[0][f"chosen_{k}"], pair[1][f"rejected_{k}"]) for k in ("label", "loss_mask")):
      raise UserError(f"data.seq_len={seq_len} cuts 'chosen' and 'rejected' down to the same tokens; raise "
                      "--config.data.seq_len or shorten the prompt")
    return {**pair[0], **pair[1]}
  return encode


def load(cfg) -> dataset.Dataset | None:
  """`cfg` is `config.data`: the pairs of data.path (a .jsonl whose first row has chosen or rejected) as a
  Dataset, info task "lm" with "preference": True, the template (if any) and tokenizer as assets; None for
  another file (lm_text's hook)."""
  found = chat_sft.jsonl_file(cfg, ("chosen", "rejected"))
  if found is None:
    return None
  path, first = found
  source = {"path": str(path), "sha256": records.file_sha256(path)}
  template, encoder, tokenizer = chat_sft.template_and_encoder(cfg, required=isinstance(first.get("prompt"), list))
  options, seq_len = fields.Chat.read(cfg), fields.Corpus.read(cfg).seq_len
  encode = encoder_of(template, encoder, tokenizer, seq_len)
  good, dropped = chat_sft.each_good(path.name, chat_sft.read_rows(path), encode, options.bad_rows)
  pairs = [pair for _, pair in good]
  arrays, bounds = chat_sft.stacked_splits(path.name, pairs, dropped, cfg)
  info = {"task": "lm", "preference": True, "vocab_size": encoder.vocab_size, "seq_len": seq_len}
  if dropped[0]:
    info["dropped_rows"] = dropped[0]
    print(f"{path.name}: dropped {dropped[0]} bad rows (data.bad_rows=drop)", file=sys.stderr)
  return dataset.Dataset(
      splits={s: synthetic.ArraySource(**{k: v[a:b] for k, v in arrays.items()}) for s, (a, b) in bounds.items()},
      info=info, assets={"tokenizer": encoder.to_json(),
                         **({"chat_template": template.to_json()} if template else {})}, source=source)
