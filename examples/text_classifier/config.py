"""The project's config: flaxforge's text_csv config on topics.csv, with early stopping on validation
accuracy (checked every epoch; stop after 3 epochs without improvement, test the best checkpoint)."""
import os

from flaxforge.launch.configs import text_csv


def get_config():
  c = text_csv.get_config()
  c.data.path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "topics.csv")
  c.data.seq_len, c.data.num_words = 16, 1000
  c.model.embed_dim = 32
  c.optimizer.learning_rate = 1e-2
  c.train.num_epochs = 50
  c.train.log_every = 10
  c.train.progress_bar = False
  c.train.early_stopping.metric = "accuracy"
  c.train.early_stopping.patience = 3
  return c
