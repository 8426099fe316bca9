"""A tiny random BERT with its own WordPiece tokenizer, saved as a Hugging Face directory in the test,
and finetune_text.py made tiny on csv_run's topic CSV (seconds per run)."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported

import tokenizers  # pylint: disable=wrong-import-position
import torch  # pylint: disable=wrong-import-position
import transformers  # pylint: disable=wrong-import-position
from tokenizers import models, normalizers, pre_tokenizers, processors  # pylint: disable=wrong-import-position

from csv_run import TOPICS  # pylint: disable=wrong-import-position
from flaxforge.launch.configs import finetune_text  # pylint: disable=wrong-import-position

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def save_bert(path) -> str:
  """A random 2-layer, 32-wide BertModel and a WordPiece tokenizer.json over the topic words, in `path`."""
  words = sorted({w for t in TOPICS.values() for w in t.split()} | set("the a of and to in is it".split()))
  vocab = {w: i for i, w in enumerate(SPECIAL + words)}
  tok = tokenizers.Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
  torch.manual_seed(0)
  model = transformers.BertModel(transformers.BertConfig(
      vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
      max_position_embeddings=32, type_vocab_size=2, pad_token_id=0))
  model.save_pretrained(str(path), safe_serialization=True)
  tok.save(os.path.join(str(path), "tokenizer.json"))
  return str(path)


def config(tmp_path, model_dir, csv_path, **overrides):
  """finetune_text.py made tiny: 20 steps of batch 16, sequence 16; `overrides` as 'a.b': value."""
  c = finetune_text.get_config()
  c.model.pretrained, c.data.path, c.data.data_dir = model_dir, str(csv_path), str(tmp_path / "tfds")
  c.data.batch_size, c.data.seq_len, c.optimizer.learning_rate, c.optimizer.warmup_steps = 16, 16, 3e-3, 2
  c.train.num_steps, c.train.eval_every_steps, c.train.log_every, c.train.progress_bar = 20, 10, 10, False
  for field, value in overrides.items():
    *sections, name = field.split(".")
    target = c
    for s in sections:
      target = target[s]
    target[name] = value
  return c
