"""The ConvNet (models/convnet.py) on your own images, one subfolder per class:

  python -m flaxforge.launch.train --config=launch/configs/image_folder.py --workdir=runs/photos \
      --config.data.path=photos/ --config.data.image_size=128,128

or a pretrained Hugging Face ViT fine-tuned on them (its config.json gives the model, its
preprocessor_config.json the image size and normalisation; --config.model.lora.rank=8 for LoRA):

  flaxforge train --config=image_folder --workdir=runs/photos_vit --config.data.path=photos/ \
      --config.model.pretrained=VIT_DIR

PNG, JPEG (any size, any mode) are decoded with Pillow, converted to `color` and resized to `image_size`
once, when the dataset is prepared; a seeded, stratified validation and test part is held out. The
prepared copy is keyed by the folder's files (names, sizes, times) and the options.
"""
from flaxforge.data import fields as data
from flaxforge.launch.configs import base
from flaxforge.models import fields as model
from flaxforge.trainer import fields as trainer


def get_config():
  c = base.get_config(trainer.ClassWeight, data.ImageFolder, data.Validation, data.Test, data.Augment,
                      data.ImageProcessor, model.ConvNet, model.Pretrained, model.Encoder, model.LoRA)
  c.data.name = "image_folder"
  c.data.path = ""
  c.data.image_size = (64, 64)  # (height, width)
  c.data.color = "rgb"  # rgb or grey
  c.data.test_fraction = 0.1
  c.data.normalize = "standardize"
  c.data.random_crop_padding = 4
  c.data.random_flip = True
  c.data.batch_size = 32
  c.model.name = "convnet"  # a ViT once model.pretrained names one (models/registry.py)
  c.model.channels = (32, 64, 128)
  c.model.dense = 128
  c.model.dropout = 0.3  # the ViT's too (ViT recipes fine-tune with --config.model.dropout=0)
  c.model.pretrained = ""
  # The pretrained model's image processor sets the image size and normalisation, unless another is named.
  c.data.image_processor = c.model.get_ref("pretrained") + ""  # one-way: setting it leaves model.pretrained
  c.model.pool = "cls"  # ViTForImageClassification's
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.train.num_epochs = 20
  c.train.log_every = 20
  return c
