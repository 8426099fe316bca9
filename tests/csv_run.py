"""Small text-classification runs on a CSV made in the test, trained in this process (seconds each)."""
import csv

import numpy as np

from flaxforge.launch.configs import text_csv
from flaxforge.trainer import loop

TOPICS = {"space": "rocket orbit launch moon planet star", "food": "bread cheese soup apple rice cake",
          "sport": "goal match team ball score coach"}


def write_topics(path, n=160, topics=("space", "food"), seed=0):
  """`n` rows of topic words plus noise, labelled by topic; returns the path."""
  rng = np.random.default_rng(seed)
  noise = "the a of and to in is it".split()
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(("text", "label"))
    for i in range(n):
      topic = topics[i % len(topics)]
      words = list(rng.choice(TOPICS[topic].split(), 4)) + list(rng.choice(noise, 4))
      writer.writerow((" ".join(rng.permutation(words)), topic))
  return path


def config(tmp_path, path, **overrides):
  """text_csv.py made tiny: 20 steps of batch 16, checkpoints at 10 and 20; `overrides` as 'a.b': value."""
  c = text_csv.get_config()
  c.data.path, c.data.data_dir = str(path), str(tmp_path / "tfds")
  c.data.batch_size, c.data.seq_len, c.data.num_words = 16, 16, 200
  c.model.embed_dim, c.optimizer.learning_rate = 16, 1e-2
  c.train.num_steps, c.train.eval_every_steps, c.train.log_every, c.train.progress_bar = 20, 10, 10, False
  for field, value in overrides.items():
    section, name = field.split(".")
    c[section][name] = value
  return c


def train(config, workdir) -> dict:
  return loop.train(config, str(workdir))
