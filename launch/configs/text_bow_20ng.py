"""The better 20 Newsgroups classifier: a bag of words over the first 1,000 tokens of each post.

Same data path as the seed config (a top-N vocabulary fitted on the training texts, stored as token ids),
with a larger vocabulary and longer sequences; the model pools the set of words instead of convolving.
"""
from flaxforge.data import fields as data
from flaxforge.launch.configs import base
from flaxforge.models import fields as model
from flaxforge.trainer import fields as trainer


def get_config():
  c = base.get_config(trainer.ClassWeight, data.Archive, data.Validation, data.Tokenizer, data.Vocabulary,
                      model.BagOfWords)
  c.data.name = "20newsgroups"
  c.data.num_words = 50000
  c.data.seq_len = 1000
  c.data.padding = "post"
  c.data.truncating = "post"
  c.data.batch_size = 64
  c.model.name = "bag_of_words"
  c.model.embed_dim = 128
  c.model.hidden = 0
  c.model.dropout = 0.5
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.weight_decay = 1e-4
  c.train.num_epochs = 8
  c.train.log_every = 100
  return c
