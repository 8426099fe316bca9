"""A decoder-only language model on bytes (no vocabulary to fit), packed into fixed-length windows.

Default corpus: the 20 Newsgroups texts (train split for training and validation, the first 200,000 bytes
of the test split for test bits per byte). Your own: --config.data.path=corpus.txt (or .jsonl with a
"text" field). Sizes: --config.model.size=tiny|small|125m|350m|1b.
"""
from flaxforge.data import fields as data
from flaxforge.launch.configs import base
from flaxforge.models import fields as model


def get_config():
  c = base.get_config(data.Archive, data.Validation, data.Test, data.Corpus, data.ByteTokens,
                      model.TransformerShape, model.TransformerCompute, model.Decoder)
  c.malloc = "jemalloc"  # reuses XLA:CPU's large per-step temporaries (launch/allocator.py); else huge pages
  c.loss = "cross_entropy"
  c.data.name = "lm_text"
  c.data.path = ""  # "" = 20 Newsgroups (needs manual_dir offline)
  c.data.text_column = "text"
  c.data.seq_len = 256
  c.data.validation_fraction = 0.01
  c.data.test_fraction = 0.1
  c.data.test_bytes = 200_000
  c.data.split_seed = 0
  c.data.separator = 0
  c.data.batch_size = 16
  c.data.eval_batch_size = 16
  c.model.name = "gpt"
  c.model.size = "small"
  c.model.num_layers = 0  # > 0 overrides the preset
  c.model.embed_dim = 0
  c.model.num_heads = 0
  c.model.mlp_dim = 0
  c.model.dtype = "float32"  # bfloat16 on TPU/GPU
  c.model.position = "rope"
  c.model.norm = "rms"
  c.model.dropout = 0.0
  c.model.tie_embeddings = True
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.b2 = 0.95
  c.optimizer.weight_decay = 0.1
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = 200
  c.optimizer.end_lr_factor = 0.1
  c.optimizer.grad_clip_norm = 1.0
  c.checkpoint.best_metric = "loss"
  c.checkpoint.best_mode = "min"
  c.train.num_epochs = 1
  c.train.num_steps = 3000
  c.train.log_every = 50
  c.train.eval_every_steps = 500
  return c
