"""One prediction mechanism: raw inputs -> model inputs (through the run's stored assets only, never re-fitted)
-> logits -> top-k labels with probabilities.

A `Predictor` wraps any `logits(inputs) -> float32 [B, classes]` function: the restored run's model
(`Predictor.from_workdir`) or an exported artifact (`flaxforge.serving.load`). Batches are padded to a few
sizes (powers of two up to `max_batch`), so varied request sizes compile a bounded number of programs.
This module imports neither the models nor the trainer at import time: an artifact runs without them.
"""
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


def input_encoding(info: dict, assets: dict) -> str:
  """The name of the run's input encoding: info's `input_encoding`, else inferred from its assets."""
  if "input_encoding" in info:
    return info["input_encoding"]
  if "text_encoder" in assets:
    return "text"
  raise UserError("this run has no input encoder stored beside its checkpoints (predict, serve and export "
                  "handle text classifiers); retrain it with a text config")


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
  """Raw inputs (texts) -> labels with probabilities, through a `logits` function and the run's assets.

  `logits_fn(inputs)`: model inputs (e.g. int32 [B, seq_len] token ids, B one of `sizes`) -> float32
  [B, num_classes] logits. `info`, `assets`: the run's info.json and assets/*.json as dicts.
  """

  def __init__(self, logits_fn, info: dict, assets: dict, *, max_batch: int = 64, divisor: int = 1):
    if info.get("task") not in (None, "classification") or "labels" not in assets:
      raise UserError("predict, serve and export handle classifiers; this run has no label names "
                      "(a language model? use flaxforge.launch.generate or serve's /v1/completions)")
    self.info, self.assets, self.labels = info, assets, list(assets["labels"])
    self.encode = ENCODERS[input_encoding(info, assets)](info, assets)
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
    return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

  def warm_up(self):
    """Compiles every padded batch size now, so that no request waits for a compile."""
    shape, dtype = self.encode.signature
    for size in self.sizes:
      self.logits(np.zeros((size, *shape), dtype))

  def probabilities(self, raw) -> np.ndarray:
    """Raw inputs (a list of texts) -> float32 [N, classes]."""
    return softmax(self.logits(self.encode(list(raw))))

  def top_k(self, raw, k: int) -> list[list[tuple[str, float]]]:
    """The k most probable labels of each raw input, as (label, probability), most probable first."""
    return top_k(self.probabilities(raw), self.labels, k)


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


