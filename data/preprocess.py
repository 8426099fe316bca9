"""Per-batch numeric preprocessing (vectorised, in the input pipeline): normalisation and label encoding."""
import numpy as np


def normalize(inputs: np.ndarray, scale: float) -> np.ndarray:
  """Integer pixels to float32 in [0, 1]: `scale` is 1 / the largest raw value."""
  return inputs.astype(np.float32) * np.float32(scale)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
  return np.eye(num_classes, dtype=np.float32)[labels]


def make_transform(info: dict, label_encoding: str = "index"):
  """The batch transform for a dataset: None when its stored inputs need nothing done."""
  scale = info.get("input_scale")
  if label_encoding not in ("index", "one_hot"):
    raise ValueError(f"label_encoding must be 'index' or 'one_hot', not {label_encoding!r}")
  if scale is None and label_encoding == "index":
    return None

  def transform(batch):
    if scale is not None:
      batch["inputs"] = normalize(batch["inputs"], scale)
    if label_encoding == "one_hot":
      batch["label"] = one_hot(batch["label"], info["num_classes"])
    return batch

  return transform
