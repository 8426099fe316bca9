"""One prediction mechanism: raw inputs -> model inputs (inputs.py: through the run's stored assets only,
never re-fitted) -> logits -> top-k labels with probabilities.

A `Predictor` wraps any `logits(inputs) -> float32 [B, classes]` function: the restored run's model
(`Predictor.from_workdir`, through live.py) or an exported artifact (`flaxforge.serving.load`). Batches are
padded to a few sizes (powers of two up to `max_batch`), so varied request sizes compile a bounded number of
programs. This module needs neither flax nor the models: an exported artifact's Predictor runs without them.
"""
import os
import threading

import numpy as np
from etils import epath

from flaxforge.core.errors import UserError
from flaxforge.inference import inputs
from flaxforge.core import paths, run_config


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
  as the run's `modality` (inputs.py: text, image, table) says; an empty one is refused (UserError).

  `logits_fn(inputs)`: model inputs (e.g. int32 [B, seq_len] token ids, B one of `sizes`) -> float32
  [B, outputs] logits (outputs: the number of classes, or 1 for regression); its optional `compile(shape,
  dtype)` compiles it for inputs of that shape without running it (`warm_up`). `info`, `assets`: the run's
  info.json and assets/*.json as dicts. `max_image_pixels`: the largest image decoded (default: Pillow's
  limit, data/images.py).
  """

  def __init__(self, logits_fn, info: dict, assets: dict, *, max_batch: int = 64, divisor: int = 1,
               max_image_pixels: int | None = None):
    self.task = info.get("task") or "classification"
    if not (self.task == "regression" or (self.task == "classification" and "labels" in assets)):
      raise UserError("predict, serve and export handle classifiers and regressors; this run has no label names "
                      "(a language model? use flaxforge.launch.generate or serve's /v1/completions)")
    self.info, self.assets, self.labels = info, assets, list(assets.get("labels") or [])
    self.modality = inputs.modality(info, assets)
    limit = {"max_image_pixels": max_image_pixels} if max_image_pixels else {}
    self.encode = self.modality.encoder({**info, **limit}, assets)
    self.sizes = bucket_sizes(max_batch, divisor)
    self._ready = self.sizes  # the padded sizes a batch may use now (`warm_up` narrows it while compiling)
    self.warmed = threading.Event()  # set once every size is compiled (by `warm_up`)
    self._warming, self._stop_warming = None, threading.Event()
    self._logits_fn = logits_fn

  @classmethod
  def from_workdir(cls, workdir: str, *, step: int | None = None, best: bool = False, max_batch: int = 64,
                   model=None, max_image_pixels: int | None = None):
    """The run's checkpoint (`step`, `best`, or by default the run's model: trainer/restore.py; its model
    alone) restored onto this process's devices. `model`: the factory a run trained through the Python API
    with `model=` needs again."""
    from flaxforge.inference import live  # pylint: disable=g-import-not-at-top  (flax: see the module doc)
    run, logits_fn, divisor = live.load(workdir, step=step, best=best, model=model)
    predictor = cls(logits_fn, run.info, load_assets(run.workdir), max_batch=max_batch, divisor=divisor,
                    max_image_pixels=max_image_pixels)
    predictor.run = run
    return predictor

  def logits(self, inputs: np.ndarray) -> np.ndarray:
    """Model inputs [N, ...] -> float32 logits [N, classes], in padded chunks of at most max_batch."""
    out, ready = [], self._ready
    for start in range(0, len(inputs), self.sizes[-1]):
      chunk = inputs[start:start + self.sizes[-1]]
      size = next(s for s in ready if s >= len(chunk))
      padded = np.zeros((size, *chunk.shape[1:]), chunk.dtype)
      padded[:len(chunk)] = chunk
      out.append(np.asarray(self._logits_fn(padded), np.float32)[:len(chunk)])
    return np.concatenate(out) if out else np.zeros((0, len(self.labels) or 1), np.float32)

  def warm_up(self, *, background: bool = False):
    """Compiles every padded batch size, so that no request waits for a compile: without running the model
    where the logits function compiles ahead (`compile`), else on a batch of zeros. `background`: only the
    smallest and the largest size now, the others in a thread (`stop_warm_up` ends it); until one is ready, a
    batch pads to the next size that is (the largest always is). `warmed` is set once all are compiled."""
    shape, dtype = self.encode.signature
    compile_fn = getattr(self._logits_fn, "compile", None)

    def compile_size(size):
      if compile_fn is not None:
        compile_fn((size, *shape), dtype)
      else:
        self._logits_fn(np.zeros((size, *shape), dtype))

    now = sorted({self.sizes[0], self.sizes[-1]}) if background else self.sizes
    for size in now:
      compile_size(size)
    self._ready = now

    def rest():
      for size in self.sizes:
        if size not in self._ready and not self._stop_warming.is_set():
          compile_size(size)
          self._ready = sorted(self._ready + [size])  # a new list: a batch reads one list throughout
      self.warmed.set()

    if background:
      self._warming = threading.Thread(target=rest, name="warm_up", daemon=True)
      self._warming.start()
    else:
      rest()

  def stop_warm_up(self):
    """Ends a background warm-up after the compile in progress (a process must not exit in the middle of one:
    XLA aborts it)."""
    self._stop_warming.set()
    if self._warming is not None:
      self._warming.join()

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
    float} for a regressor; and "unseen": {column: value} for a table row's categories training never saw."""
    raws = _listed(raw)
    return self.with_unseen(self.results_of(self.logits(self.encode(raws)), k), self.encode.unseen(raws)[0])

  def results_of(self, logits: np.ndarray, k: int = 3) -> list[dict]:
    """`results` from logits [N, outputs] already computed (the server's batcher computes them)."""
    if self.task == "regression":
      return [{"value": float(v)} for v in logits[:, 0]]
    return [{"top": [{"label": l, "probability": p} for l, p in row]}
            for row in top_k(softmax(logits), self.labels, k)]

  @staticmethod
  def with_unseen(results: list[dict], unseen: list[dict]) -> list[dict]:
    """`results` with "unseen" added where an input has values training never saw (Encoder.unseen)."""
    return [{**result, "unseen": found} if found else result for result, found in zip(results, unseen)]


def _listed(raw) -> list:
  """A raw input or a list of them, as a list (a text, image bytes or table row is one input)."""
  return [raw] if isinstance(raw, (str, bytes, bytearray, dict, os.PathLike)) else list(raw)


def top_k(probs: np.ndarray, labels: list[str], k: int) -> list[list[tuple[str, float]]]:
  order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
  return [[(labels[j], float(p[j])) for j in row] for p, row in zip(probs, order)]


def load_assets(workdir) -> dict:
  """Every assets/*.json of a run, by name."""
  folder = workdir / "assets"
  return {p.name[:-len(".json")]: run_config.read_json(p) for p in folder.glob("*.json")} if folder.exists() else {}


def modality_of(workdir: str) -> inputs.Modality:
  """The input modality of the run in `workdir`, from its info.json and assets (text where the folder holds no
  run: restoring it then says what is missing)."""
  folder = epath.Path(paths.expand(workdir))
  if not (folder / "info.json").exists():
    return inputs.MODALITIES["text"]
  return inputs.modality(run_config.read_json(folder / "info.json"), load_assets(folder))
