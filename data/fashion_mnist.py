"""Fashion-MNIST (Zalando, 70,000 28x28 grey images, 10 classes) from its four IDX files in `manual_dir`,
as a TFDS array_record dataset of uint8 [28, 28, 1] images.

The files may be gzip'd (as published) or not. A seeded, stratified `validation_fraction` of the 60,000
training images is held out for validation (none with 0: every training image trains); the 10,000 t10k
images are the test split.
"""
import dataclasses
import gzip
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from flaxforge.data import builders, dataset, fields, image_folder, splits
from flaxforge.core.errors import UserError

NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_UBYTE = 0x08


def read_idx(path) -> np.ndarray:
  """An IDX file (optionally gzip'd) as a numpy array: magic 0x0000 08 <ndim>, ndim big-endian uint32 sizes,
  then the uint8 values. UserError when the file is not an unsigned-byte IDX file or is cut short."""
  path = pathlib.Path(path)
  raw = path.read_bytes()
  if raw[:2] == b"\x1f\x8b":
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as e:
      raise UserError(f"{path}: damaged gzip file ({e}); download it again") from None
  if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != _UBYTE:
    raise UserError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()}); is it a Fashion-MNIST file?")
  ndim = raw[3]
  shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", ndim, offset=4))
  size, start = int(np.prod(shape)), 4 + 4 * ndim
  if len(raw) - start != size:
    raise UserError(f"{path}: holds {len(raw) - start} values where its header announces {size}; download it again")
  return np.frombuffer(raw, np.uint8, size, offset=start).reshape(shape)


def find(folder: pathlib.Path, stem: str) -> pathlib.Path:
  for name in (stem + ".gz", stem):
    if (folder / name).exists():
      return folder / name
  raise UserError(f"{stem}.gz not found in {folder}; put the four Fashion-MNIST IDX files there, or fix "
                  "--config.data.manual_dir")


def read_split(folder: pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [N, 28, 28], labels uint8 [N]) of `split` ("train" or "test"), checked against each other."""
  image_file, label_file = (find(folder, stem) for stem in FILES[split])
  images, labels = read_idx(image_file), read_idx(label_file)
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or labels.max(initial=0) >= len(NAMES):
    raise UserError(f"{image_file.name} {images.shape} and {label_file.name} {labels.shape} do not form an image "
                    f"set with labels 0-{len(NAMES) - 1}; are they Fashion-MNIST files?")
  return images, labels


class FashionMnist(builders.ArrayBuilder):
  DESCRIPTION = "Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from its IDX files"
  HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
  MANUAL_DOWNLOAD_INSTRUCTIONS = "Put the four Fashion-MNIST IDX files (.gz or not) in the manual_dir."

  def features(self):
    return tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8), tfds.features.ClassLabel(names=NAMES)

  def _split_generators(self, dl_manager):
    options = self.builder_config.options
    folder = pathlib.Path(dl_manager.manual_dir)
    train_images, train_labels = read_split(folder, "train")
    test_images, test_labels = read_split(folder, "test")
    fraction = options["validation_fraction"]
    parts = splits.hold_out(train_labels, validation=fraction, seed=options["split_seed"], where="Fashion-MNIST",
                            size=f"validation_fraction {fraction:g} of {len(train_labels)} training images")
    self.info.metadata["label_names"] = list(NAMES)
    self.info.metadata["pixel_stats"] = image_folder.pixel_statistics([train_images[parts["train"]][..., None]])
    return {**{name: self._generate_examples(train_images[idx][..., None], train_labels[idx])
               for name, idx in parts.items()},
            "test": self._generate_examples(test_images[..., None], test_labels)}


def load(cfg) -> dataset.Dataset:
  """`cfg` is `config.data` (data.fields.Archive, Validation, Augment): the IDX files in manual_dir, prepared
  once per split options in data_dir."""
  options = dataclasses.asdict(fields.Validation.read(cfg))
  builder = FashionMnist(data_dir=dataset.data_dir(cfg), config=builders.builder_config(options))
  manual_dir = fields.Archive.read(cfg).manual_dir or None
  if not builder.is_prepared():
    if not manual_dir:
      raise UserError("Fashion-MNIST is read from its IDX files; pass --config.data.manual_dir=FOLDER_WITH_THEM")
    for stems in FILES.values():
      for stem in stems:
        find(builders.existing_path(manual_dir, "manual_dir", "folder"), stem)
  return image_folder.image_dataset(dataset.prepare(builder, manual_dir), cfg)
