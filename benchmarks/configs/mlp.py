"""Workload B of /work/shared/bench: MLP 784-512-512-10, batch 128, Adam 1e-3, on 60,000 synthetic rows."""
from flaxforge.data import fields as data
from flaxforge.launch.configs import base
from flaxforge.models import fields as model


def get_config():
  c = base.get_config(data.Synthetic, model.MLP)
  c.data.name = "synthetic"
  c.data.synthetic.update(dict(kind="dense", num_train=60_000, features=784, num_classes=10))
  c.data.batch_size = 128
  c.model.name = "mlp"
  c.model.hidden = (512, 512)
  c.model.kernel_init = "lecun_normal"
  c.model.dropout = 0.0
  c.train.num_epochs = 0
  c.train.num_steps = 1_000
  c.train.log_every = 100
  c.train.eval_every_steps = 500  # no validation split: this is the checkpoint interval
  c.train.progress_bar = False
  c.checkpoint.best_metric = ""
  return c
