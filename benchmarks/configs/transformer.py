"""Workload C of /work/shared/bench: a BERT-like encoder (4 layers, width 256, 4 heads, MLP 1024, learned
positions, LayerNorm) over 128 synthetic ids, vocab 10,000, 20 classes, batch 32, AdamW(1e-3, wd 0.01)."""
from flaxforge.data import fields as data
from flaxforge.launch.configs import base
from flaxforge.models import fields as model


def get_config():
  c = base.get_config(data.Synthetic, model.TransformerShape, model.TransformerCompute, model.Encoder)
  c.malloc = "jemalloc"  # reuses XLA:CPU's large per-step temporaries (launch/allocator.py); else huge pages
  c.data.name = "synthetic"
  c.data.synthetic.update(dict(kind="tokens", num_train=640, seq_len=128,
                                                    vocab_size=10_000, num_classes=20))
  c.data.batch_size = 32
  c.model.update(dict(name="bert", num_layers=4, embed_dim=256, num_heads=4, mlp_dim=1024, norm="layer",
                      position="learned", pool="cls", dropout=0.0))
  c.optimizer.name = "adamw"
  c.optimizer.weight_decay = 0.01
  c.train.num_steps = 40
  c.train.log_every = 5
  c.train.eval_every_steps = 20  # no validation split: the checkpoint interval
  c.train.progress_bar = False
  c.checkpoint.best_metric = ""
  return c
