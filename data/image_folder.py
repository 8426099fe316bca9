"""A folder of images, one subfolder per class, as a TFDS array_record dataset of uint8 [H, W, C] arrays.

Images of any size and format Pillow reads (PNG, JPEG, ...) are decoded (data/images.py: upright, 8-bit),
converted to RGB or greyscale and resized to `image_size` once, when the dataset is prepared. A seeded,
stratified validation and test part is held out (no validation part with `validation_fraction=0`).
Normalisation happens per batch from `info` (`input_scale`, `input_offset`: [0, 1], [-1, 1], or per-channel
standardisation fitted on the training images); random crops and flips, when configured, are described in
`info["augment"]` for the training transform (`preprocess.augment`). A pretrained model's image processor
(data.image_processor) sets the size, RGB and the normalisation instead, as transformers' ViTImageProcessor
applies them.
"""
import dataclasses
import json
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from flaxforge.data import builders, dataset, fields, images as images_lib, splits
from flaxforge.core.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def image_files(folder: pathlib.Path) -> list[pathlib.Path]:
  """The image files (by extension, EXTENSIONS) in `folder` and its subfolders, sorted by path."""
  return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def list_images(root: pathlib.Path) -> tuple[list[pathlib.Path], list[int], list[str]]:
  """(files, label ids, class names): the images of each subfolder, classes sorted by name."""
  names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
  files, labels = [], []
  for i, name in enumerate(names):
    found = image_files(root / name)
    files += found
    labels += [i] * len(found)
  if len(names) < 2 or not files:
    raise UserError(f"{root} holds {len(names)} class folders and {len(files)} images; a classifier needs one "
                    f"subfolder per class (at least 2) with {'/'.join(EXTENSIONS)} files")
  return files, labels, names


def pixel_statistics(images) -> dict:
  """Per-channel mean and standard deviation of uint8 images [N, H, W, C] (the training split's), as JSON."""
  total, total_sq, count = 0.0, 0.0, 0
  for image in images:
    pixels = np.asarray(image, np.float64).reshape(-1, image.shape[-1])
    total, total_sq, count = total + pixels.sum(0), total_sq + np.square(pixels).sum(0), count + len(pixels)
  mean = total / count
  return {"mean": mean.tolist(), "std": np.sqrt(np.maximum(total_sq / count - mean ** 2, 0)).tolist()}


def normalization(kind: str, stats: dict) -> tuple[list[float], list[float]]:
  """(scale, offset) per channel such that `pixels * scale + offset` is the normalised image: `unit`
  [0, 1], `symmetric` [-1, 1], or `standardize` (zero mean, unit variance over the training pixels)."""
  channels = len(stats["mean"])
  if kind == "standardize":
    std = np.maximum(np.asarray(stats["std"]), 1e-6)
    return (1 / std).tolist(), (-np.asarray(stats["mean"]) / std).tolist()
  scale, offset = {"unit": (1 / 255, 0.0), "symmetric": (2 / 255, -1.0)}[kind]
  return [scale] * channels, [offset] * channels


@dataclasses.dataclass(frozen=True)
class Processor:
  """What a Hugging Face image processor (preprocessor_config.json, ViTImageProcessor's fields) does to an
  image: convert it to RGB, resize it (bilinear) to `size` = (height, width), then per channel
  `pixels * scale + offset`, i.e. (pixels * rescale_factor - image_mean) / image_std."""
  size: tuple
  scale: list
  offset: list


def image_processor(cfg) -> Processor | None:
  """The image processor that `cfg` (config.data: data.fields.ImageProcessor) names, None for none. UserError
  when its file cannot be read or asks for what is not done here (resizing other than bilinear to a fixed
  height and width, center cropping), naming the field."""
  path = fields.ImageProcessor.read(cfg).image_processor
  if not path:
    return None
  file = os.path.join(path, "preprocessor_config.json") if os.path.isdir(path) else path
  try:
    with open(file, encoding="utf-8") as f:
      config = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read the image processor {file} ({getattr(e, 'strerror', None) or e}); point "
                    "data.image_processor at a preprocessor_config.json, or set it to '' for data.image_size and "
                    "data.normalize") from None
  size = config.get("size") or {}
  unsupported = {"do_resize": config.get("do_resize", True) is not True, "size": set(size) != {"height", "width"},
                 "resample": config.get("resample", 2) != 2,  # PIL.Image.Resampling.BILINEAR
                 "do_center_crop": bool(config.get("do_center_crop"))}
  for name, refused in unsupported.items():
    if refused:
      raise UserError(f"{file}: {name}={config.get(name)!r} is not supported; image_folder follows ViT's image "
                      "processor (do_resize, size {height, width}, resample 2: bilinear, no center crop)")
  rescale = config.get("rescale_factor", 1 / 255) if config.get("do_rescale", True) else 1.0
  mean, std = np.zeros(3), np.ones(3)
  if config.get("do_normalize", True):  # transformers' default mean and std: IMAGENET_STANDARD, 0.5
    mean, std = np.asarray(config.get("image_mean", [0.5] * 3)), np.asarray(config.get("image_std", [0.5] * 3))
  return Processor((int(size["height"]), int(size["width"])), (rescale / std).tolist(), (-mean / std).tolist())


def image_dataset(builder, cfg) -> dataset.Dataset:
  """The trainer's view of a prepared image builder (metadata: label_names, pixel_stats): its splits, the
  `info` (shape, classes, normalisation, augmentation; data.fields.Augment) and the label names as an asset."""
  names = list(builder.info.metadata["label_names"])
  augment, processor = fields.Augment.read(cfg), image_processor(cfg)
  scale, offset = ((processor.scale, processor.offset) if processor else
                   normalization(augment.normalize, builder.info.metadata["pixel_stats"]))
  info = {"task": "classification", "num_classes": len(names), "label_names": names,
          "input_shape": list(builder.info.features["inputs"].shape), "input_scale": scale, "input_offset": offset}
  if augment.random_crop_padding or augment.random_flip:
    info["augment"] = {"crop_padding": int(augment.random_crop_padding), "flip": bool(augment.random_flip)}
  return dataset.Dataset(splits=dataset.sources(builder, dataset.SPLITS), info=info, assets={"labels": names})


class ImageFolder(builders.ArrayBuilder):
  DESCRIPTION = "Images from a user's folder (one subfolder per class)"

  def features(self):
    size, color = self.builder_config.options["image_size"], self.builder_config.options["color"]
    return (tfds.features.Tensor(shape=(*size, 3 if color == "rgb" else 1), dtype=np.uint8),
            tfds.features.Tensor(shape=(), dtype=np.int64))

  def _split_generators(self, dl_manager):
    options = self.builder_config.options
    files, labels, names = list_images(pathlib.Path(options["path"]))
    labels = np.asarray(labels)
    parts = splits.hold_out(labels, validation=options["validation_fraction"], test=options["test_fraction"],
                            seed=options["split_seed"], where=options["path"], size=f"{len(files)} images",
                            add="add images")
    size, color = tuple(options["image_size"]), options["color"]
    images = [images_lib.decode(path, size, color, max_pixels=options["max_image_pixels"],
                                raise_with="--config.data.max_image_pixels=N")
              for path in files]  # decoded once; a bad file fails before writing
    self.info.metadata["label_names"] = names
    self.info.metadata["pixel_stats"] = pixel_statistics(images[i] for i in parts["train"])
    return {name: self._generate_examples([images[i] for i in idx], labels[idx]) for name, idx in parts.items()}


def options(cfg) -> dict:
  """What shapes the prepared copy: the folder, its files' identity and the decoding and split options."""
  folder, processor = fields.ImageFolder.read(cfg), image_processor(cfg)
  if processor:
    folder = dataclasses.replace(folder, image_size=processor.size, color="rgb")
  root = builders.existing_path(folder.path, "path", "folder")
  files, _, _ = list_images(root)
  return {**dataclasses.asdict(folder), "image_size": [int(s) for s in folder.image_size],
          **dataclasses.asdict(fields.Validation.read(cfg)), **dataclasses.asdict(fields.Test.read(cfg)),
          "path": str(root), "files": builders.identity(files)}


def load(cfg) -> dataset.Dataset:
  """`cfg` is `config.data` (data.fields.ImageFolder, Validation, Test, Augment, ImageProcessor): the folder at
  `path`, prepared once per files and options in data_dir."""
  opts = options(cfg)
  builder = ImageFolder(data_dir=dataset.data_dir(cfg), config=builders.builder_config(opts, source=opts["path"]))
  return image_dataset(dataset.prepare(builder), cfg)
