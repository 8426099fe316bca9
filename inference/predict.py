"""One prediction mechanism: raw inputs -> model inputs (through the run's stored assets only, never re-fitted)
-> logits -> top-k labels with probabilities.

A `Predictor` wraps any `logits(inputs) -> float32 [B, classes]` function: the restored run's model
(`Predictor.from_workdir`) or an exported artifact (`flaxforge.serving.load`). Batches are padded to a few
sizes (powers of two up to `max_batch`), so varied request sizes compile a bounded number of programs.
This module imports neither the models nor the trainer at import time: an artifact runs without them.
"""
import io
import os

import numpy as np

from flaxforge.core.errors import UserError
from flaxforge.data import text as text_lib

# How a run's raw inputs become model inputs: info["input_encoding"] (default "text" for runs with a
# text encoder asset) -> a function of (info, assets) returning `encode(raw inputs) -> np.ndarray [B, ...]`
# with an attribute `signature`: (the shape of one example, its dtype name). Images and tables register theirs.
ENCODERS = {}


def register_encoder(name: str):
  def register(make):
    ENCODERS[name] = make
    return make
  return register


@register_encoder("text")
def _text_encoder(info: dict, assets: dict):
  del info
  encoder = text_lib.encoder_from_json(assets["text_encoder"])

  def encode(texts):
    if not all(isinstance(t, str) for t in texts):
      raise UserError("every input must be a text (a JSON string)")
    return encoder.encode(texts)
  encode.text_encoder, encode.signature = encoder, ((encoder.seq_len,), "int32")
  return encode


@register_encoder("image")
def _image_encoder(info: dict, assets: dict):
  """Image files (paths, or their bytes) -> float32 [B, H, W, C]: decoded and resized as the dataset was
  prepared, normalised with the run's stored `input_scale`/`input_offset`."""
  del assets
  from flaxforge.data import image_folder, preprocess  # pylint: disable=g-import-not-at-top  (Pillow)
  shape = tuple(info["input_shape"])
  color = "grey" if shape[-1] == 1 else "rgb"

  def encode(images):
    arrays = []
    for i, image in enumerate(images):
      if isinstance(image, (bytes, bytearray)):
        arrays.append(image_folder.decode(io.BytesIO(image), shape[:2], color, name=f"image {i}"))
      elif isinstance(image, (str, os.PathLike)):
        arrays.append(image_folder.decode(image, shape[:2], color))
      else:
        raise UserError("every input must be an image file's path or its bytes")
    return preprocess.normalize(np.stack(arrays), info["input_scale"], info.get("input_offset", 0.0))
  encode.signature = (shape, "float32")
  return encode


@register_encoder("table")
def _table_encoder(info: dict, assets: dict):
  """Table rows ({column: value} dicts; a missing or null value is filled as in training) -> float32
  [B, features], through the statistics fitted on the training split (assets/table_transform.json)."""
  del info
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from flaxforge.data import tabular  # pylint: disable=g-import-not-at-top
  statistics = assets["table_transform"]

  def encode(rows):
    if not all(isinstance(row, dict) for row in rows):
      raise UserError("every input must be a table row: a JSON object of column: value")
    return tabular.transform(statistics, pd.DataFrame.from_records(list(rows)))
  encode.signature = ((len(tabular.feature_names(statistics)),), "float32")
  return encode


def input_encoding(info: dict, assets: dict) -> str:
  """The name of the run's input encoding: info's `input_encoding`, else inferred from its assets."""
  if "input_encoding" in info:
    return info["input_encoding"]
  if "text_encoder" in assets:
    return "text"
  if "table_transform" in assets:
    return "table"
  if len(info.get("input_shape", ())) == 3 and "input_scale" in info:
    return "image"
  if info.get("task") == "lm":
    raise UserError("this run is a language model: it completes text rather than predicting labels; use "
                    "flaxforge generate --workdir=... --prompt=... (or flaxforge serve for completions)")
  raise UserError("this run has no input encoder stored beside its checkpoints (predict, serve and export "
                  "handle text, image and table runs); retrain it with one of those configs")


def bucket_sizes(max_batch: int, divisor: int = 1) -> list[int]:
  """The padded batch sizes: powers of two from `divisor` (a power of two) up to max_batch, and max_batch."""
  sizes, size = [], max(1, divisor)
  while size < max_batch:
    sizes.append(size)
    size *= 2
  return sizes + [max(max_batch, divisor)]


def softmax(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


class Predictor:
  """Raw inputs -> labels with probabilities (classifiers) or values (regression), through a `logits`
  function and the run's assets. Raw inputs are texts, image files (paths or bytes) or table rows (dicts),
  as the run's `encoding` ("text", "image", "table") says.

  `logits_fn(inputs)`: model inputs (e.g. int32 [B, seq_len] token ids, B one of `sizes`) -> float32
  [B, outputs] logits (outputs: the number of classes, or 1 for regression). `info`, `assets`: the run's
  info.json and assets/*.json as dicts.
  """

  def __init__(self, logits_fn, info: dict, assets: dict, *, max_batch: int = 64, divisor: int = 1):
    self.task = info.get("task") or "classification"
    if not (self.task == "regression" or (self.task == "classification" and "labels" in assets)):
      raise UserError("predict, serve and export handle classifiers and regressors; this run has no label names "
                      "(a language model? use flaxforge.launch.generate or serve's /v1/completions)")
    self.info, self.assets, self.labels = info, assets, list(assets.get("labels") or [])
    self.encoding = input_encoding(info, assets)
    self.encode = ENCODERS[self.encoding](info, assets)
    self.sizes = bucket_sizes(max_batch, divisor)
    self._logits_fn = logits_fn

  @classmethod
  def from_workdir(cls, workdir: str, *, step: int | None = None, best: bool = False, max_batch: int = 64,
                   model=None):
    """The run's checkpoint (latest, `step` or `best`) restored onto this process's devices. `model`: the
    factory a run trained through the Python API with `model=` needs again."""
    from flaxforge.trainer import restore  # pylint: disable=g-import-not-at-top  (imports the models)
    run = restore.restore(workdir, step=step, best=best, model=model)
    predictor = cls(model_logits(run), run.info, load_assets(run.workdir), max_batch=max_batch,
                    divisor=batch_divisor(run))
    predictor.run = run
    return predictor

  def logits(self, inputs: np.ndarray) -> np.ndarray:
    """Model inputs [N, ...] -> float32 logits [N, classes], in padded chunks of at most max_batch."""
    out = []
    for start in range(0, len(inputs), self.sizes[-1]):
      chunk = inputs[start:start + self.sizes[-1]]
      size = next(s for s in self.sizes if s >= len(chunk))
      padded = np.zeros((size, *chunk.shape[1:]), chunk.dtype)
      padded[:len(chunk)] = chunk
      out.append(np.asarray(self._logits_fn(padded), np.float32)[:len(chunk)])
    return np.concatenate(out) if out else np.zeros((0, len(self.labels) or 1), np.float32)

  def warm_up(self):
    """Compiles every padded batch size now, so that no request waits for a compile."""
    shape, dtype = self.encode.signature
    for size in self.sizes:
      self.logits(np.zeros((size, *shape), dtype))

  def probabilities(self, raw) -> np.ndarray:
    """Raw inputs (one, or a list) -> float32 [N, classes] (classifiers), each row summing to 1."""
    return softmax(self.logits(self.encode(_listed(raw))))

  def predict(self, raw) -> list:
    """The most probable label (classifier) or the value (regressor) of each raw input (one, or a list)."""
    logits = self.logits(self.encode(_listed(raw)))
    if self.task == "regression":
      return [float(v) for v in logits[:, 0]]
    return [self.labels[i] for i in logits.argmax(axis=1)]

  def top_k(self, raw, k: int) -> list[list[tuple[str, float]]]:
    """The k most probable labels of each raw input, as (label, probability), most probable first."""
    return top_k(self.probabilities(raw), self.labels, k)

  def results(self, raw, k: int = 3) -> list[dict]:
    """One JSON-ready result per raw input: {"top": [{label, probability}, ...]} for a classifier, {"value":
    float} for a regressor."""
    return self.results_of(self.logits(self.encode(_listed(raw))), k)

  def results_of(self, logits: np.ndarray, k: int = 3) -> list[dict]:
    """`results` from logits [N, outputs] already computed (the server's batcher computes them)."""
    if self.task == "regression":
      return [{"value": float(v)} for v in logits[:, 0]]
    return [{"top": [{"label": l, "probability": p} for l, p in row]}
            for row in top_k(softmax(logits), self.labels, k)]


def _listed(raw) -> list:
  """A raw input or a list of them, as a list (a text, image bytes or table row is one input)."""
  return [raw] if isinstance(raw, (str, bytes, bytearray, dict, os.PathLike)) else list(raw)


def top_k(probs: np.ndarray, labels: list[str], k: int) -> list[list[tuple[str, float]]]:
  order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
  return [[(labels[j], float(p[j])) for j in row] for p, row in zip(probs, order)]


def load_assets(workdir) -> dict:
  """Every assets/*.json of a run, by name."""
  from flaxforge.trainer import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  folder = workdir / "assets"
  return {p.name[:-len(".json")]: workdir_lib.read_json(p) for p in folder.glob("*.json")} if folder.exists() else {}


def batch_divisor(run) -> int:
  from flaxforge.trainer import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  return mesh_lib.batch_divisor(run.mesh)


def model_logits(run):
  """`logits(inputs)` of a restored run's model in eval mode, jitted on its mesh (batch split over it)."""
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from flaxforge.trainer import mesh as mesh_lib  # pylint: disable=g-import-not-at-top

  def logits(state, inputs):
    model, _ = nnx.merge(run.structure.eval_graphdef, state)
    return model(inputs).astype("float32")

  jitted = jax.jit(logits, in_shardings=(run.structure.shardings, mesh_lib.batch_sharding(run.mesh)),
                   out_shardings=mesh_lib.replicated(run.mesh))
  return lambda inputs: jitted(run.state, inputs)


