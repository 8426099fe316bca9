"""Workload A of /work/shared/bench on its synthetic data: the seed text CNN, ids [10,000 x 100], vocab 10,000,
20 classes, batch 32, Adam 1e-3 (like for like with text_cnn_torch.py). The real-data run is text_cnn_20ng."""
from flaxforge.data import fields as data
from flaxforge.launch.configs import base
from flaxforge.models import fields as model


def get_config():
  c = base.get_config(data.Synthetic, model.TextCNN)
  c.data.name = "synthetic"
  c.data.synthetic.update(dict(kind="tokens", num_train=10_000, seq_len=100,
                                                    vocab_size=10_000, num_classes=20))
  c.data.batch_size = 32
  c.model.name = "text_cnn"
  c.model.dropout = 0.0
  c.train.num_steps = 1_500
  c.train.log_every = 150
  c.train.eval_every_steps = 750  # no validation split: the checkpoint interval
  c.train.progress_bar = False
  c.checkpoint.best_metric = ""
  return c
