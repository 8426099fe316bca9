"""Per-batch numeric preprocessing (vectorised, in the input pipeline): normalisation, training
augmentation and label encoding."""
import numpy as np

from flaxforge.data import image_folder


def normalize(inputs: np.ndarray, scale, offset=0.0) -> np.ndarray:
  """Raw values to float32 `inputs * scale + offset`; a per-channel list broadcasts over the last axis."""
  return inputs.astype(np.float32) * np.asarray(scale, np.float32) + np.asarray(offset, np.float32)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
  return np.eye(num_classes, dtype=np.float32)[labels]


def make_transform(info: dict, label_encoding: str = "index", *, train: bool = False, seed: int = 0):
  """The batch transform for a dataset: None when its stored inputs need nothing done. `train` adds the
  random augmentation `info["augment"]` describes (image datasets), seeded by `seed` and each batch."""
  scale, offset = info.get("input_scale"), info.get("input_offset", 0.0)
  augment = info.get("augment") if train else None
  if label_encoding not in ("index", "one_hot"):
    raise ValueError(f"label_encoding must be 'index' or 'one_hot', not {label_encoding!r}")
  if scale is None and label_encoding == "index" and not augment:
    return None

  def transform(batch):
    if augment:
      batch["inputs"] = image_folder.augment(batch["inputs"], augment, seed)
    if scale is not None:
      batch["inputs"] = normalize(batch["inputs"], scale, offset)
    if label_encoding == "one_hot":
      batch["label"] = one_hot(batch["label"], info["num_classes"])
    return batch

  return transform
