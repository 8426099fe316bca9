"""The seed's MLP (sections 3-4) on scikit-learn's bundled digits: the default job."""
from flaxforge.launch.configs import base


def get_config():
  c = base.get_config()
  c.data.name = "digits"
  c.data.batch_size = 32
  c.model.name = "mlp"
  c.model.hidden = (128, 64)
  c.model.activation = "relu"  # relu, sigmoid, tanh, gelu
  c.model.kernel_init = "he_normal"  # normal, uniform, lecun_*, xavier_*, he_*
  c.model.bias_init = "zeros"
  c.model.init_std = 0.05  # for normal
  c.model.init_limit = 0.05  # for uniform
  c.model.dropout = 0.1
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.train.num_epochs = 30
  c.train.log_every = 20
  return c
