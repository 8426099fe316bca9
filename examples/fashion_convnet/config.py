"""The project's config: flaxforge's fashion_mnist config (data, optimizer, schedule) with the project's own
model, found by import path, and the fields that model reads."""
from flaxforge.launch.configs import fashion_mnist


def get_config():
  c = fashion_mnist.get_config()
  c.model.name = "my_models.convnet"  # my_models/convnet.py, from this folder
  c.model.widths = (32, 64)  # fields the project's model reads: --config.model.widths=... overrides them
  c.model.dropout = 0.2
  c.optimizer.learning_rate = 2e-3
  c.train.num_epochs = 5
  return c
