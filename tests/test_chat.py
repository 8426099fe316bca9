"""data/chat.py against transformers' apply_chat_template, on tiny tokenizers built here and saved as
transformers saves them (tokenizer.json, tokenizer_config.json, chat_template.jinja)."""
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported

import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position
import tokenizers  # pylint: disable=wrong-import-position
from tokenizers import decoders, models, pre_tokenizers, processors, trainers  # pylint: disable=wrong-import-position
from transformers import PreTrainedTokenizerFast  # pylint: disable=wrong-import-position

from flaxforge.core.errors import UserError  # pylint: disable=wrong-import-position
from flaxforge.data import chat  # pylint: disable=wrong-import-position

# Llama 3's template with the assistant's reply and <|eot_id|> in a generation block.
LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}"
    "{% endgeneration %}{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
# Qwen2's ChatML template (its default system prompt included) with a generation block.
QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}{% generation %}"
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

TEXTS = ["You are a terse assistant.", "What is the capital of France?", "Paris, of course.",
         "And of Italy?", "Rome. Café crème ☕ costs 3 euros.", "Tell me a joke", "No."] * 20
CONVERSATIONS = [
    [{"role": "system", "content": "You are a terse assistant."},
     {"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "Paris, of course."},
     {"role": "user", "content": "And of Italy?"},
     {"role": "assistant", "content": "Rome. Café crème ☕ costs 3 euros."}],
    [{"role": "user", "content": "Tell me a joke"}, {"role": "assistant", "content": "No."}],
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "Paris, of course."},
     {"role": "user", "content": "And of Italy?"},
     {"role": "assistant", "content": " Rome. "}],
]


def _byte_level_bpe(specials):
  """Llama 3's kind: byte-level BPE, trained here on TEXTS."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.post_processor = processors.ByteLevel(trim_offsets=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  return tok


def _word_level(specials):
  """A word-level vocabulary with whitespace splitting: spaces and newlines belong to no token."""
  words = sorted({w for t in TEXTS + ["system user assistant You are a helpful"]
                  for w in pre_tokenizers.Whitespace().pre_tokenize_str(t) for w in [w[0]]})
  tok = tokenizers.Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[UNK]"] + words)}, unk_token="[UNK]"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.add_special_tokens(specials)
  return tok


STYLES = {
    "llama3": (LLAMA3, _byte_level_bpe, ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                                         "<|end_header_id|>", "<|eot_id|>"],
               dict(bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>"), "<|eot_id|>"),
    "qwen2": (QWEN2, _word_level, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
              dict(eos_token="<|im_end|>", pad_token="<|endoftext|>"), "<|im_end|>"),
}


def _save(path, style, template, *, jinja_file=True):
  _, build, specials, tokens, _ = STYLES[style]
  hf = PreTrainedTokenizerFast(tokenizer_object=build(specials), chat_template=template, **tokens)
  hf.save_pretrained(str(path), save_jinja_files=jinja_file)
  return str(path)


@pytest.fixture(scope="module", params=sorted(STYLES))
def model(request, tmp_path_factory):
  """(style, folder with the tagged template, folder with the template less its generation tags, and
  transformers' tokenizer loaded from the first folder)."""
  style = request.param
  template = STYLES[style][0]
  tagged = _save(tmp_path_factory.mktemp(style), style, template)
  plain = _save(tmp_path_factory.mktemp(style + "_plain"), style,
                template.replace("{% generation %}", "").replace("{% endgeneration %}", ""), jinja_file=False)
  return style, tagged, plain, PreTrainedTokenizerFast.from_pretrained(tagged)


@pytest.mark.parametrize("conversation", range(len(CONVERSATIONS)))
def test_mask_equals_transformers(model, conversation):
  style, tagged, plain, hf = model
  messages = CONVERSATIONS[conversation]
  want = hf.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
  for folder in (tagged, plain):  # by generation blocks, and by prefixes where the template has none
    ids, mask = chat.ChatTemplate(folder).encode(messages)
    assert ids.tolist() == want["input_ids"], (style, folder)
    if style == "qwen2" and conversation == 2:
      # The last reply starts with a space, which this word-level tokenizer drops: transformers' char_to_token
      # of the span's first character is None and it stops marking (its `break`), losing the whole reply.
      # We mark the reply's tokens; everything else is the same.
      extra = mask - np.asarray(want["assistant_masks"])
      assert set(extra.tolist()) == {0, 1}
      assert hf.decode(ids[extra == 1]) == "Rome . <|im_end|>"
    else:
      assert mask.tolist() == want["assistant_masks"], (style, folder)
  # independent of transformers: the masked tokens spell the replies, each with its end-of-turn token
  decoded = hf.decode(ids[mask == 1])
  end = STYLES[style][4]
  for m in messages:
    if m["role"] == "assistant":
      assert m["content"].split()[0].strip(".,") in decoded
  assert decoded.count(end) == sum(m["role"] == "assistant" for m in messages)
  assert 0 < mask.sum() < len(mask)


def test_loss_on_every_token(model):
  _, tagged, _, hf = model
  ids, mask = chat.ChatTemplate(tagged).encode(CONVERSATIONS[0], loss_on="all")
  assert ids.tolist() == hf.apply_chat_template(CONVERSATIONS[0], tokenize=True, return_dict=True)["input_ids"]
  assert mask.tolist() == [1] * len(ids)


def test_generation_prompt_and_stop_token(model):
  style, tagged, _, hf = model
  template = chat.ChatTemplate(tagged)
  prompt = CONVERSATIONS[0][:-1]
  want = hf.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
  assert template.prompt_ids(prompt).tolist() == want
  assert template.render(prompt, add_generation_prompt=True) == hf.apply_chat_template(
      prompt, add_generation_prompt=True, tokenize=False)
  assert template.render(prompt, add_generation_prompt=True).endswith(
      "<|start_header_id|>assistant<|end_header_id|>\n\n" if style == "llama3" else "<|im_start|>assistant\n")
  end_of_turn = hf.convert_tokens_to_ids(STYLES[style][4])
  stops = template.stop_ids()
  assert stops[0] == end_of_turn
  assert hf.eos_token_id in stops


def test_stop_ids_read_generation_config(model, tmp_path):
  _, tagged, _, _ = model
  for name in os.listdir(tagged):
    with open(os.path.join(tagged, name), "rb") as src, open(tmp_path / name, "wb") as dst:
      dst.write(src.read())
  (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [0, 1]}))
  assert set(chat.ChatTemplate(str(tmp_path)).stop_ids()) >= {0, 1}


ADVANCED = (
    "{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + m.role) }}{% endif %}{% set ns.n = ns.n + 1 %}"
    "{{ m.role }}: {{ m.content }} {{ {'k': 'é<&>', 'n': ns.n} | tojson }}\n"
    "{% if loop.index > 3 %}{% break %}{% endif %}{% endfor %}"
    "{% if tools %}{{ tools | tojson(indent=2) }}{% endif %}{{ dict(a=1) | tojson }}{{ strftime_now('%Y') }}"
    "{% if add_generation_prompt %}assistant:{% endif %}{{ eos_token }}")


def test_render_equals_transformers_for_the_environment_features(tmp_path):
  folder = _save(tmp_path, "qwen2", ADVANCED)
  hf = PreTrainedTokenizerFast.from_pretrained(folder)
  template = chat.ChatTemplate(folder)
  messages = CONVERSATIONS[0] + [{"role": "user", "content": "more", "tool_calls": None}]
  tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
  for prompt in (False, True):
    assert template.render(messages, add_generation_prompt=prompt, tools=tools) == hf.apply_chat_template(
        messages, add_generation_prompt=prompt, tools=tools, tokenize=False)
  with pytest.raises(UserError, match="unknown role tool.*fix the conversation"):
    template.render([{"role": "tool", "content": "x"}])


def test_template_from_tokenizer_config(model, tmp_path):
  _, _, plain, _ = model
  assert not os.path.exists(os.path.join(plain, chat.TEMPLATE_FILE))
  with open(os.path.join(plain, "tokenizer_config.json")) as f:
    assert "chat_template" in json.load(f)
  assert "{% for message in messages %}" in chat.ChatTemplate(plain).source


def test_a_folder_without_a_template_names_the_fix(tmp_path):
  tok = _byte_level_bpe(["<|eot_id|>"])
  PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(str(tmp_path))
  with pytest.raises(UserError, match=r"has no chat template.*chat_template\.jinja") as e:
    chat.ChatTemplate(str(tmp_path))
  assert "\n" not in str(e.value)


@pytest.mark.parametrize("messages, match", [
    ([{"content": "hi"}], "message 0 has no 'role'"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant"}], r"message 1 \(assistant\) has no content"),
    ([{"role": "user", "content": ""}], r"message 0 \(user\) has no content"),
    ([{"role": "user", "content": None}], "has no content"),
    ([], "non-empty list"),
    (["hi"], "message 0 is str"),
])
def test_bad_messages_are_one_line(model, messages, match):
  _, tagged, _, _ = model
  with pytest.raises(UserError, match=match) as e:
    chat.ChatTemplate(tagged).encode(messages)
  assert "\n" not in str(e.value)


def test_a_reply_first_needs_generation_blocks(model):
  _, tagged, plain, _ = model
  messages = [{"role": "assistant", "content": "Paris"}, {"role": "user", "content": "No."}]
  with pytest.raises(UserError, match="starts with the assistant.*system or user message"):
    chat.ChatTemplate(plain).encode(messages)
  assert chat.ChatTemplate(tagged).encode(messages)[1].sum() > 0


def test_a_template_that_rewrites_earlier_turns_needs_generation_blocks(tmp_path):
  # Drops the reasoning of every assistant turn but the last, as reasoning models' templates do.
  rewriting = ("{% for m in messages %}{{ m.role }}: {% if m.role == 'assistant' and not loop.last %}"
               "{{ m.content.split('</think>')[-1] }}{% else %}{{ m.content }}{% endif %}<|eot_id|>{% endfor %}"
               "{% if add_generation_prompt %}assistant: {% endif %}")
  folder = _save(tmp_path, "llama3", rewriting)
  messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "<think>x</think>b"},
              {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
  with pytest.raises(UserError, match="generation"):
    chat.ChatTemplate(folder).encode(messages)
  ids, mask = chat.ChatTemplate(folder).encode(messages[:2])  # one reply: nothing is rewritten
  assert mask.sum() > 0 and np.all(mask[:3] == 0)
