"""A seconds-long digits MLP run for smoke tests and trying the CLI: a few steps, no progress bar."""
from flaxforge.launch.configs import mlp_digits


def get_config():
  c = mlp_digits.get_config()
  c.model.hidden = (64,)
  c.data.batch_size = 16
  c.optimizer.learning_rate = 1e-2
  c.train.num_steps = 40
  c.train.eval_every_steps = 20
  c.train.log_every = 10
  c.train.progress_bar = False
  return c
