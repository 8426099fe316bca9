"""Chat and preference rows as finetune_lm data (data/chat_sft.py, data/preference_rows.py): the model's own
template and loss mask, one-line errors for bad rows (or data.bad_rows=drop), the template stored with the run."""
import json

import numpy as np
import pytest

import tiny_hf
from flaxforge.core.errors import UserError
from flaxforge.data import chat, lm_text
from flaxforge.data.hf_tokenizer import HFTokenizer
from flaxforge.launch.configs import finetune_lm

CONVERSATIONS = [
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Colour of the sky?"},
     {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "And grass?"},
     {"role": "assistant", "content": "Green."}],
    [{"role": "user", "content": "Two plus two?"}, {"role": "assistant", "content": "Four."}],
] * 10
TEXTS = [m["content"] for c in CONVERSATIONS for m in c]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
  return tiny_hf.save_chat_llama(tmp_path_factory.mktemp("chat_llama"), TEXTS)


def _write(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def _config(model_dir, path, **fields):
  c = finetune_lm.get_config()
  c.model.pretrained, c.data.path, c.data.seq_len = model_dir, path, 96
  for name, value in fields.items():
    c.data[name] = value
  return c


def test_chat_rows_train_on_the_templates_assistant_tokens(chat_model, tmp_path):
  ds = lm_text.load(_config(chat_model, _write(tmp_path / "c.jsonl", [{"messages": c} for c in CONVERSATIONS])).data)
  template = chat.ChatTemplate(chat_model)
  ids, mask = template.encode(CONVERSATIONS[0])
  row = ds.splits["train"][0]
  np.testing.assert_array_equal(row["inputs"][:len(ids) - 1], ids[:-1])
  np.testing.assert_array_equal(row["label"][:len(ids) - 1], ids[1:])
  np.testing.assert_array_equal(row["loss_mask"][:len(ids) - 1], mask[1:])  # the label's mask
  assert not row["loss_mask"][len(ids) - 1:].any()
  assert mask.sum() and mask.sum() < len(mask)
  # The stored template renders and stops as the model folder's does.
  stored = chat.ChatTemplate.from_json(ds.assets["chat_template"], HFTokenizer.from_json(
      ds.assets["tokenizer"]["tokenizer"]).tokenizer)
  assert stored.render(CONVERSATIONS[0]) == template.render(CONVERSATIONS[0])
  assert stored.stop_ids() == template.stop_ids() and stored.stop_ids()[0] == 2  # <|eot_id|>
  every = lm_text.load(_config(chat_model, str(tmp_path / "c.jsonl"), loss_on="all").data).splits["train"][0]
  assert every["loss_mask"][:len(ids) - 1].all()


@pytest.mark.parametrize("bad, says", [
    ({"messages": [{"content": "hi"}]}, "row 3: message 0 has no 'role'"),
    ({"messages": [{"role": "user", "content": ""}]}, r"row 3: message 0 \(user\) has no content"),
    ({"text": "x"}, "row 3: expected an object with 'messages'"),
])
def test_a_bad_chat_row_is_one_line_or_dropped(chat_model, tmp_path, bad, says):
  rows = [{"messages": c} for c in CONVERSATIONS]
  path = _write(tmp_path / "c.jsonl", rows[:2] + [bad] + rows[2:])
  with pytest.raises(UserError, match=says) as e:
    lm_text.load(_config(chat_model, path).data)
  assert "\n" not in str(e.value) and "bad_rows=drop" in str(e.value)
  ds = lm_text.load(_config(chat_model, path, bad_rows="drop").data)
  assert ds.info["dropped_rows"] == 1 and sum(len(s) for s in ds.splits.values()) == len(rows)


def test_a_model_without_a_template_names_the_fix(tmp_path):
  model_dir = tiny_hf.save_chat_llama(tmp_path / "base", TEXTS, template=False)
  path = _write(tmp_path / "c.jsonl", [{"messages": c} for c in CONVERSATIONS])
  with pytest.raises(UserError, match="has no chat template.*chat_template.jinja") as e:
    lm_text.load(_config(model_dir, path).data)
  assert "\n" not in str(e.value)


def test_preference_rows_plain_and_chat(chat_model, tmp_path):
  plain = [{"prompt": "Colour of the sky?", "chosen": " Blue.", "rejected": " Green."}] * 20
  ds = lm_text.load(_config(chat_model, _write(tmp_path / "p.jsonl", plain)).data)
  assert ds.info["preference"] and set(ds.splits["train"][0]) == {
      f"{s}_{k}" for s in ("chosen", "rejected") for k in ("inputs", "label", "loss_mask")}
  row = ds.splits["train"][0]
  np.testing.assert_array_equal(row["chosen_inputs"][:4], row["rejected_inputs"][:4])  # the same prompt
  assert row["chosen_loss_mask"].sum() >= 2 and row["chosen_loss_mask"][0] == 0
  prompt = [{"role": "user", "content": "Colour of the sky?"}]
  chats = [{"prompt": prompt, "chosen": "Blue.", "rejected": [{"role": "assistant", "content": "Green."}]}] * 20
  row = lm_text.load(_config(chat_model, _write(tmp_path / "q.jsonl", chats)).data).splits["train"][0]
  template = chat.ChatTemplate(chat_model)
  ids, mask = template.encode(prompt + [{"role": "assistant", "content": "Blue."}])
  np.testing.assert_array_equal(row["chosen_loss_mask"][:len(ids) - 1], mask[1:])


@pytest.mark.parametrize("bad, says", [
    ({"prompt": "a", "chosen": "same", "rejected": "same"}, "row 2: 'chosen' equals 'rejected'"),
    ({"prompt": "a", "chosen": "x"}, "row 2: field 'rejected' not found"),
    ({"prompt": "a", "chosen": "", "rejected": "y"}, "row 2: 'chosen' is empty"),
])
def test_a_bad_preference_row_is_one_line_or_dropped(chat_model, tmp_path, bad, says):
  good = {"prompt": "Colour of the sky?", "chosen": " Blue.", "rejected": " Green."}
  path = _write(tmp_path / "p.jsonl", [good, bad] + [good] * 20)
  with pytest.raises(UserError, match=says):
    lm_text.load(_config(chat_model, path).data)
  assert lm_text.load(_config(chat_model, path, bad_rows="drop").data).info["dropped_rows"] == 1
