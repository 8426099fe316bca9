"""The seed's MLP (sections 3-4) on scikit-learn's bundled digits: the default job."""
from flaxforge.launch.configs import base
from flaxforge.models import fields as model
from flaxforge.trainer import fields as trainer


def get_config():
  c = base.get_config(trainer.ClassWeight, model.MLP)
  c.data.name = "digits"
  c.data.batch_size = 32
  c.model.name = "mlp"
  c.model.hidden = (128, 64)
  c.model.activation = "relu"
  c.model.kernel_init = "he_normal"
  c.model.dropout = 0.1
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.train.num_epochs = 30
  c.train.log_every = 20
  return c
