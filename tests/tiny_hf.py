"""A tiny random BERT with its own WordPiece tokenizer, saved as a Hugging Face directory in the test,
and finetune_text.py made tiny on csv_run's topic CSV (seconds per run); the same for DistilBERT, RoBERTa,
XLM-RoBERTa (a Unigram tokenizer, on Chinese rows) and a Qwen2 classifier (`save_family`); a chat Llama
with Llama 3's template (`save_chat_llama`)."""
import csv
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported

import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position
import tokenizers  # pylint: disable=wrong-import-position
import torch  # pylint: disable=wrong-import-position
import transformers  # pylint: disable=wrong-import-position
from tokenizers import models, normalizers, pre_tokenizers, processors  # pylint: disable=wrong-import-position

import csv_run  # pylint: disable=wrong-import-position
from csv_run import TOPICS  # pylint: disable=wrong-import-position
from flaxforge.launch.configs import finetune_text  # pylint: disable=wrong-import-position

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def save_bert(path) -> str:
  """A random 2-layer, 32-wide BertModel and a WordPiece tokenizer.json over the topic words, in `path`."""
  return save_family(path, "bert", TOPICS.values())


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
  """A tiny random BERT directory (`save_bert`)."""
  return save_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def topics(tmp_path_factory):
  """csv_run's two-topic CSV, 240 rows."""
  return csv_run.write_topics(tmp_path_factory.mktemp("csv") / "topics.csv", n=240)


TINY = {"data.batch_size": 16, "data.seq_len": 16, "optimizer.learning_rate": 3e-3, "optimizer.warmup_steps": 2,
        "train.num_steps": 20, "train.eval_every_steps": 10, "train.log_every": 10, "train.progress_bar": False}


def fields(tmp_path, model_dir, csv_path, **overrides) -> dict:
  """finetune_text.py's overrides for a tiny run (20 steps of batch 16, sequence 16), then `overrides`."""
  return {"model.pretrained": str(model_dir), "data.path": str(csv_path), "data.data_dir": str(tmp_path / "tfds"),
          **TINY, **overrides}


def _byte_bpe(texts, special_tokens) -> tokenizers.Tokenizer:
  """A byte-level BPE tokenizer of 300 tokens trained on `texts`, `special_tokens` first (ids 0, 1, ...)."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  tok.train_from_iterator(texts, tokenizers.trainers.BpeTrainer(
      vocab_size=300, special_tokens=special_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  return tok


def _save(model, tok, path) -> str:
  model.save_pretrained(str(path), safe_serialization=True)
  tok.save(os.path.join(str(path), "tokenizer.json"))
  return str(path)


def save_gpt2(path, texts) -> str:
  """A random 2-layer, 32-wide GPT-2 and a byte-level BPE tokenizer.json trained on `texts`, in `path`."""
  tok = _byte_bpe(texts, ["<|endoftext|>"])
  torch.manual_seed(0)
  model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=tok.get_vocab_size(), n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=0,
      eos_token_id=0))
  return _save(model, tok, path)


def save_llama(path, texts) -> str:
  """A random 2-layer, 32-wide Llama (bos 1, eos 2) and a byte-level BPE tokenizer.json that starts every
  text with <s>, as Llama's does, in `path` (save_decoder)."""
  return save_decoder(path, texts, "llama")


def config(tmp_path, model_dir, csv_path, base=finetune_text, **overrides):
  """finetune_text.py (or `base`) made tiny (`fields`); `overrides` as 'a.b': value."""
  c = base.get_config()
  for field, value in fields(tmp_path, model_dir, csv_path, **overrides).items():
    *sections, name = field.split(".")
    target = c
    for s in sections:
      target = target[s]
    target[name] = value
  return c


def flags(tmp_path, model_dir, csv_path, **overrides) -> list[str]:
  """The same run as `config`, as `flaxforge train` flags."""
  return ["--config=finetune_text", *(f"--config.{k}={v}" for k, v in fields(tmp_path, model_dir, csv_path,
                                                                              **overrides).items())]


# Tiny random decoders of the families flaxforge converts, 32 wide and 2-3 layers, with what makes each one
# itself: grouped-query heads, a head width that is not hidden / heads (Qwen3, Gemma), sliding windows
# shorter than the tests' sequences (Mistral, Qwen3, Gemma), soft-caps small enough to bite (Gemma 2), local and
# global RoPE with linear scaling (Gemma 3). Token ids as save_decoder's tokenizer has them: <unk> 0, <s> 1,
# </s> 2.
_SIZES = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2,
              bos_token_id=1, eos_token_id=2)
DECODERS = {
    "llama": lambda **kw: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        num_hidden_layers=2, **_SIZES, **kw)),
    "mistral": lambda **kw: transformers.MistralForCausalLM(transformers.MistralConfig(
        num_hidden_layers=2, sliding_window=4, **_SIZES, **kw)),
    "qwen3": lambda **kw: transformers.Qwen3ForCausalLM(transformers.Qwen3Config(  # a window on layer 1 only
        num_hidden_layers=2, head_dim=16, tie_word_embeddings=True, use_sliding_window=True, sliding_window=4,
        max_window_layers=1, **_SIZES, **kw)),
    "gemma2": lambda **kw: transformers.Gemma2ForCausalLM(transformers.Gemma2Config(
        num_hidden_layers=3, head_dim=16, sliding_window=4, query_pre_attn_scalar=12, final_logit_softcapping=3.0,
        attn_logit_softcapping=2.0, pad_token_id=0, **_SIZES, **kw)),
    "gemma3": lambda **kw: transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(
        num_hidden_layers=3, head_dim=16, sliding_window=4, pad_token_id=0,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"], rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}, **_SIZES, **kw)),
}


def save_decoder(path, texts, family="llama", **config) -> str:
  """A random DECODERS[family] (config: its config's overrides) and a byte-level BPE tokenizer.json trained on
  `texts` that starts every text with <s>, as Llama's does, in `path`."""
  tok = _byte_bpe(texts, ["<unk>", "<s>", "</s>"])
  tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
  torch.manual_seed(0)
  return _save(DECODERS[family](vocab_size=tok.get_vocab_size(), max_position_embeddings=32, **config), tok, path)


# --- the encoder families, a decoder classifier and Chinese text (issue 29) ---
ROBERTA_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>"]  # XLM-R's and RoBERTa's ids 0..3
SPORT_ZH = "足球 比赛 球队 进球 教练 冠军 篮球 运动员".split()
TECH_ZH = "手机 电脑 芯片 软件 网络 数据 程序 科技".split()


def chinese_rows(n=160, seed=0) -> list[tuple[str, str]]:
  """`n` (text, label) rows of Chinese words without spaces, labelled 体育 (sport) or 科技 (technology)."""
  rng = np.random.default_rng(seed)
  return [("".join(rng.choice(SPORT_ZH if i % 2 else TECH_ZH, 4)) + "。", "体育" if i % 2 else "科技")
          for i in range(n)]


def write_rows(path, rows) -> str:
  """A text,label CSV of `rows`, UTF-8."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(("text", "label"))
    writer.writerows(rows)
  return str(path)


def _wordpiece(texts) -> tokenizers.Tokenizer:
  words = sorted({w for t in texts for w in t.split()} | set("the a of and to in is it".split()))
  tok = tokenizers.Tokenizer(models.WordPiece({w: i for i, w in enumerate(SPECIAL + words)}, unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                              ("[SEP]", 3)])
  return tok


def _unigram(texts) -> tokenizers.Tokenizer:
  """A SentencePiece-like Unigram model trained on `texts`, as XLM-R's tokenizer.json is made (Metaspace)."""
  tok = tokenizers.Tokenizer(models.Unigram())
  tok.normalizer = normalizers.NFKC()
  tok.pre_tokenizer = pre_tokenizers.Metaspace()
  tok.decoder = tokenizers.decoders.Metaspace()
  tok.train_from_iterator(texts, tokenizers.trainers.UnigramTrainer(vocab_size=80, special_tokens=ROBERTA_SPECIAL,
                                                                    unk_token="<unk>"))
  return tok


def save_family(path, family, texts) -> str:
  """A random 2-layer, 32-wide model of `family` (bert, distilbert, roberta, xlm-roberta, qwen2) and a tokenizer
  trained on `texts` as the family's real ones are made (WordPiece; byte-level BPE; Unigram), with a
  tokenizer_config.json naming its padding token, in `path`."""
  sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
  if family in ("bert", "distilbert"):
    tok, pad = _wordpiece(texts), "[PAD]"
  elif family == "qwen2":
    tok, pad = _byte_bpe(texts, ["<|endoftext|>"]), "<|endoftext|>"
  else:
    tok, pad = (_unigram(texts) if family == "xlm-roberta" else _byte_bpe(texts, ROBERTA_SPECIAL)), "<pad>"
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
  vocab = tok.get_vocab_size()
  torch.manual_seed(0)
  model = {
      "bert": lambda: transformers.BertModel(transformers.BertConfig(
          vocab_size=vocab, max_position_embeddings=32, **sizes)),
      "distilbert": lambda: transformers.DistilBertModel(transformers.DistilBertConfig(
          vocab_size=vocab, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=32)),
      # initializer_range 0.2, not 0.02: the <s> state of so small a random RoBERTa hardly depends on the text,
      # and LoRA then learns nothing in a few steps
      "roberta": lambda: transformers.RobertaModel(transformers.RobertaConfig(
          vocab_size=vocab, max_position_embeddings=34, type_vocab_size=1, initializer_range=0.2, **sizes)),
      "xlm-roberta": lambda: transformers.XLMRobertaModel(transformers.XLMRobertaConfig(
          vocab_size=vocab, max_position_embeddings=34, type_vocab_size=1, initializer_range=0.2, **sizes)),
      # no pad_token_id, as Qwen2's config.json: it would zero that embedding row, and with it explain's baseline
      # (RMSNorm scales all-zero inputs to nothing at all)
      "qwen2": lambda: transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
          vocab_size=vocab, num_key_value_heads=2, max_position_embeddings=64, **sizes)),
  }[family]()
  _save(model, tok, path)
  with open(os.path.join(str(path), "tokenizer_config.json"), "w", encoding="utf-8") as f:
    json.dump({"pad_token": pad}, f)
  return str(path)


# Llama 3's chat template, the assistant's reply and <|eot_id|> in a generation block (as tests/test_chat.py's).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}"
    "{% endgeneration %}{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
CHAT_SPECIAL = ["<|end_of_text|>", "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]


def save_chat_llama(path, texts, *, template=True, max_positions=128) -> str:
  """A random 2-layer, 32-wide Llama with Llama 3's special tokens (ids 0-4) and, with `template`, its chat
  template (chat_template.jinja; tokenizer_config.json names bos and eos), in `path`."""
  tok = _byte_bpe(texts, CHAT_SPECIAL)
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
      vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions, bos_token_id=1,
      eos_token_id=0))
  _save(model, tok, path)
  with open(os.path.join(str(path), "tokenizer_config.json"), "w") as f:
    json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}, f)
  if template:
    with open(os.path.join(str(path), "chat_template.jinja"), "w") as f:
      f.write(CHAT_TEMPLATE)
  return str(path)
