"""A folder of images, one subfolder per class, as a TFDS array_record dataset of uint8 [H, W, C] arrays.

Images of any size and format Pillow reads (PNG, JPEG, ...) are decoded, converted to RGB or greyscale and
resized to `image_size` once, when the dataset is prepared. A seeded, stratified validation and test part is
held out (no validation part with `validation_fraction=0`). Normalisation happens per batch from `info`
(`input_scale`, `input_offset`: [0, 1], [-1, 1], or per-channel standardisation fitted on the training
images); random crops and flips, when configured, are described in `info["augment"]` for the training
transform (`augment` below).
"""
import pathlib
import zlib

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from flaxforge.data import dataset, keyed, text
from flaxforge.core.errors import UserError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
NORMALIZE = ("unit", "symmetric", "standardize")
_COLORS = {"rgb": "RGB", "grey": "L"}
_DEFAULTS = {"image_size": (64, 64), "color": "rgb", "normalize": "unit", "validation_fraction": 0.1,
             "test_fraction": 0.1, "split_seed": 0}


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


def decode(path, size: tuple[int, int], color: str, *, name: str | None = None) -> np.ndarray:
  """One image file (a path or a binary file object, called `name` in errors) as uint8 [height, width,
  channels], resized (bilinear) to `size` = (height, width). UserError if Pillow cannot read it."""
  try:
    with Image.open(path) as image:
      image = image.convert(_COLORS[color]).resize((size[1], size[0]), Image.Resampling.BILINEAR)
      array = np.asarray(image, np.uint8)
  except (OSError, ValueError) as e:
    raise UserError(f"{name or path}: not a readable image ({str(e).split(' <')[0]}); remove it or convert it "
                    "to PNG/JPEG") from None
  return array[..., None] if array.ndim == 2 else array


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
  if kind == "unit":
    return [1 / 255] * channels, [0.0] * channels
  if kind == "symmetric":
    return [2 / 255] * channels, [-1.0] * channels
  if kind == "standardize":
    std = np.maximum(np.asarray(stats["std"]), 1e-6)
    return (1 / std).tolist(), (-np.asarray(stats["mean"]) / std).tolist()
  raise UserError(f"unknown normalisation {kind!r}; set --config.data.normalize to one of: {', '.join(NORMALIZE)}")


def image_dataset(builder, cfg) -> dataset.Dataset:
  """The trainer's view of a prepared image builder (metadata: label_names, pixel_stats): its splits, the
  `info` (shape, classes, normalisation, augmentation) and the label names as an asset."""
  names = list(builder.info.metadata["label_names"])
  scale, offset = normalization(cfg.get("normalize", "unit"), builder.info.metadata["pixel_stats"])
  crop, flip = int(cfg.get("random_crop_padding", 0)), bool(cfg.get("random_flip", False))
  info = {"task": "classification", "num_classes": len(names), "label_names": names,
          "input_shape": list(builder.info.features["inputs"].shape), "input_scale": scale, "input_offset": offset}
  if crop or flip:
    info["augment"] = {"crop_padding": crop, "flip": flip}
  return dataset.Dataset(splits=dataset.sources(builder, ["train", "validation", "test"]), info=info,
                         assets={"labels": names})


def augment(images: np.ndarray, settings: dict, seed: int) -> np.ndarray:
  """Random crops (pad by `crop_padding` with edge pixels, crop back to size) and horizontal flips of a
  batch [B, H, W, C]. The randomness is a function of `seed` and the batch's own pixels, so the same step
  gets the same augmentation after a resume, while the same image differs between epochs' batches."""
  rng = np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(images))])
  out = images
  pad = settings.get("crop_padding", 0)
  if pad:
    h, w = images.shape[1:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    ys, xs = rng.integers(0, 2 * pad + 1, (2, len(images)))
    out = np.stack([p[y:y + h, x:x + w] for p, y, x in zip(padded, ys, xs)])
  if settings.get("flip"):
    flips = rng.random(len(images)) < 0.5
    out = np.where(flips[:, None, None, None], out[:, :, ::-1], out)
  return out


class ImageFolder(dataset.PlainLog, tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")
  _generate_examples = staticmethod(keyed.examples)  # _split_generators computes every row

  def _info(self):
    size, color = self.builder_config.options["image_size"], self.builder_config.options["color"]
    return tfds.core.DatasetInfo(
        builder=self,
        description="Images from a user's folder (one subfolder per class); options: " + self.builder_config.description,
        features=tfds.features.FeaturesDict({
            "inputs": tfds.features.Tensor(shape=(*size, 3 if color == "rgb" else 1), dtype=np.uint8),
            "label": tfds.features.Tensor(shape=(), dtype=np.int64),
        }),
        supervised_keys=("inputs", "label"),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    options = self.builder_config.options
    files, labels, names = list_images(pathlib.Path(options["path"]))
    labels = np.asarray(labels)
    test, validation, train = text.holdout(labels, [options["test_fraction"], options["validation_fraction"]],
                                           options["split_seed"])  # test first: a refit keeps its rows
    parts = text.without_validation({"train": train, "validation": validation, "test": test},
                                    options["validation_fraction"])
    text.refuse_empty(parts, options["path"], f"{len(files)} images", "add images")
    size, color = tuple(options["image_size"]), options["color"]
    images = [decode(path, size, color) for path in files]  # decoded once; a bad file fails before writing
    self.info.metadata["label_names"] = names
    self.info.metadata["pixel_stats"] = pixel_statistics(images[i] for i in train)
    return {name: self._generate_examples([images[i] for i in idx], labels[idx]) for name, idx in parts.items()}


def options(cfg) -> dict:
  """What shapes the prepared copy: the folder, its files' identity and the decoding and split options."""
  root = keyed.existing_path(cfg.get("path", ""), "path", "folder")
  opts = {k: cfg.get(k, v) for k, v in _DEFAULTS.items() if k != "normalize"}
  opts["image_size"] = [int(s) for s in opts["image_size"]]
  if opts["color"] not in _COLORS:
    raise UserError(f"unknown color {opts['color']!r}; set --config.data.color to one of: {', '.join(_COLORS)}")
  files, _, _ = list_images(root)
  return {**opts, "path": str(root), "files": keyed.identity(files)}


def load(cfg) -> dataset.Dataset:
  """`cfg` is `config.data`: path, image_size ((64, 64)), color (rgb|grey), normalize (unit|symmetric|
  standardize), random_crop_padding (0), random_flip (False), validation_fraction (0 = none), test_fraction,
  split_seed, data_dir."""
  opts = options(cfg)
  builder = ImageFolder(data_dir=dataset.data_dir(cfg.get("data_dir", "")),
                        config=keyed.builder_config(opts, source=opts["path"]))
  return image_dataset(dataset.prepare(builder), cfg)
