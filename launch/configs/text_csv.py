"""Train a text classifier on your own CSV, TSV or JSONL file:

  python -m flaxforge.launch.train --config=launch/configs/text_csv.py --workdir=runs/reviews \
      --config.data.path=reviews.csv --config.data.text_column=text --config.data.label_column=label

Label names are read from the data. Without a split column, a seeded, stratified validation and test
split is held out; with one (values train/validation/test) it is used as given. The encoded dataset is
cached in the data directory, keyed by the file's name, size and time and the preprocessing options.
The model is the bag-of-words classifier; --config.model.name=text_cnn (with its fields) also works.
"""
from flaxforge.data import fields as data
from flaxforge.launch.configs import base
from flaxforge.models import fields as model
from flaxforge.trainer import fields as trainer


def get_config():
  c = base.get_config(trainer.ClassWeight, data.TextFile, data.Labels, data.Validation, data.Test, data.Tokenizer,
                      data.Vocabulary, model.BagOfWords)
  c.data.name = "text_file"
  c.data.path = ""
  c.data.text_column = "text"
  c.data.label_column = "label"
  c.data.split_column = ""  # "" = hold out validation and test splits
  c.data.test_fraction = 0.1
  c.data.bad_rows = "error"  # a row with a missing, null, NaN or empty text or label: "error" or "drop"
  c.data.num_words = 30000
  c.data.seq_len = 400
  c.data.padding = "post"
  c.data.truncating = "post"
  c.data.batch_size = 32
  c.model.name = "bag_of_words"
  c.model.embed_dim = 128
  c.model.hidden = 0
  c.model.dropout = 0.3
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.weight_decay = 1e-4
  c.train.num_epochs = 10
  c.train.log_every = 50
  return c
