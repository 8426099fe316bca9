"""A BERT-style encoder classifier trained from scratch on 20 Newsgroups, pooling a [CLS] token.

Word vocabulary fitted on the training texts (the same data path as the text CNN), a [CLS] id at
position 0, the first 128 tokens of each post (headers included), pre-norm blocks with learned positions.
"""
from flaxforge.data import fields as data
from flaxforge.launch.configs import base
from flaxforge.models import fields as model
from flaxforge.trainer import fields as trainer


def get_config():
  c = base.get_config(trainer.ClassWeight, data.Archive, data.Validation, data.Tokenizer, data.Vocabulary,
                      model.TransformerShape, model.TransformerCompute, model.Encoder)
  c.malloc = "jemalloc"  # reuses XLA:CPU's large per-step temporaries (launch/allocator.py); else huge pages
  c.data.name = "20newsgroups"
  c.data.num_words = 20000
  c.data.seq_len = 128
  c.data.padding = "post"
  c.data.truncating = "post"
  c.data.cls_token = True
  c.data.batch_size = 32
  c.data.eval_batch_size = 64
  c.model.name = "bert"
  c.model.size = "small"  # tiny, small, 125m, 350m, 1b
  c.model.num_layers = 2  # > 0 overrides the preset: 2 x 128 trains in minutes on a CPU
  c.model.embed_dim = 128
  c.model.num_heads = 4
  c.model.mlp_dim = 512
  c.model.pool = "cls"  # or "mean"
  c.model.dtype = "float32"  # bfloat16 on TPU/GPU
  c.model.position = "learned"
  c.model.norm = "layer"
  c.model.dropout = 0.1
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 5e-4
  c.optimizer.weight_decay = 0.01
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = 300
  c.optimizer.grad_clip_norm = 1.0
  c.train.num_epochs = 3
  c.train.log_every = 50
  return c
