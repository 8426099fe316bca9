"""The ConvNet (models/convnet.py) on Fashion-MNIST from its four IDX files:

  python -m flaxforge.launch.train --config=launch/configs/fashion_mnist.py --workdir=runs/fashion \
      --config.data.manual_dir=FOLDER_WITH_THE_IDX_FILES

The first run prepares the dataset once (TFDS array_record); 10% of the training images are held out for
validation, the t10k images are the test split.
"""
from flaxforge.data import fields as data
from flaxforge.launch.configs import base
from flaxforge.models import fields as model
from flaxforge.trainer import fields as trainer


def get_config():
  c = base.get_config(trainer.ClassWeight, data.Archive, data.Validation, data.Augment, model.ConvNet)
  c.data.name = "fashion_mnist"
  c.data.validation_fraction = 0.1
  c.data.split_seed = 0
  c.data.normalize = "unit"  # unit [0, 1], symmetric [-1, 1], standardize
  c.data.random_crop_padding = 0  # > 0: random crops after padding by this many pixels (training only)
  c.data.random_flip = False  # random horizontal flips (training only)
  c.data.batch_size = 64
  c.model.name = "convnet"
  c.model.channels = (32, 64)
  c.model.convs_per_stage = 1
  c.model.dense = 128
  c.model.dropout = 0.3
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.train.num_epochs = 12
  c.train.log_every = 100
  return c
