"""Per-batch numeric preprocessing (vectorised, in the input pipeline): normalisation, training
augmentation and label encoding."""
import zlib

import numpy as np


def normalize(inputs: np.ndarray, scale, offset=0.0) -> np.ndarray:
  """Raw values to float32 `inputs * scale + offset`; a per-channel list broadcasts over the last axis."""
  return inputs.astype(np.float32) * np.asarray(scale, np.float32) + np.asarray(offset, np.float32)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
  return np.eye(num_classes, dtype=np.float32)[labels]


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


def make_transform(info: dict, label_encoding: str = "index", *, train: bool = False, seed: int = 0):
  """The batch transform for a dataset: None when its stored inputs need nothing done. `train` adds the
  random augmentation `info["augment"]` describes (image datasets), seeded by `seed` and each batch."""
  scale, offset = info.get("input_scale"), info.get("input_offset", 0.0)
  augmentation = info.get("augment") if train else None
  if scale is None and label_encoding == "index" and not augmentation:
    return None

  def transform(batch):
    if augmentation:
      batch["inputs"] = augment(batch["inputs"], augmentation, seed)
    if scale is not None:
      batch["inputs"] = normalize(batch["inputs"], scale, offset)
    if label_encoding == "one_hot":
      batch["label"] = one_hot(batch["label"], info["num_classes"])
    return batch

  return transform
