"""Loading an exported artifact: needs only jax, numpy, safetensors and the preprocessing (no model code).

An artifact folder (written by `flaxforge.serving.export`) holds:

| file | what |
|---|---|
| `manifest.json` | format version, input signature, output meaning, jax/flaxforge versions, file hashes, content hash |
| `model.jax` | `jax.export` serialisation of `logits(params, inputs)`, the batch dimension symbolic |
| `weights.safetensors` | `params`: a flat {"path.to.param": array} dict, the function's first argument |
| `info.json`, `assets/*.json` | the run's dataset info, vocabulary and label names |
"""
import hashlib
import json
import pathlib

import jax
from safetensors import numpy as safetensors_numpy

from flaxforge.core.errors import UserError
from flaxforge.inference import predict

FORMAT = "flaxforge-export"
FORMAT_VERSION = 1
MANIFEST, FUNCTION, WEIGHTS, INFO, ASSETS = "manifest.json", "model.jax", "weights.safetensors", "info.json", "assets"


def file_hashes(folder: pathlib.Path) -> dict:
  """sha256 of every file but the manifest, by relative path."""
  return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def content_hash(hashes: dict) -> str:
  return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()


class Artifact:
  """An exported model: `logits(inputs)` jitted over the deserialised function and the stored weights."""

  def __init__(self, folder: str):
    self.folder = pathlib.Path(folder)
    path = self.folder / MANIFEST
    if not path.is_file():
      raise UserError(f"{path} not found: pass a folder that flaxforge export wrote")
    self.manifest = json.loads(path.read_text())
    if self.manifest.get("format") != FORMAT or self.manifest.get("format_version") != FORMAT_VERSION:
      raise UserError(f"{folder} is not a flaxforge export of format version {FORMAT_VERSION}; re-export it "
                      "from its checkpoint with this flaxforge")
    hashes = file_hashes(self.folder)
    if hashes != self.manifest["files"]:
      changed = sorted(k for k in set(hashes) | set(self.manifest["files"])
                       if hashes.get(k) != self.manifest["files"].get(k))
      raise UserError(f"{folder} was altered after export ({', '.join(changed)} differ from the manifest's "
                      "hashes); re-export it from its checkpoint")
    try:
      self.exported = jax.export.deserialize(bytearray((self.folder / FUNCTION).read_bytes()))
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f"jax {jax.__version__} cannot load {folder} (exported with jax "
                      f"{self.manifest.get('jax_version')}: {str(e).splitlines()[0]}); re-export it from its "
                      "checkpoint with flaxforge export") from e
    self.params = safetensors_numpy.load_file(str(self.folder / WEIGHTS))
    self.info = json.loads((self.folder / INFO).read_text())
    self.assets = {p.stem: json.loads(p.read_text()) for p in sorted((self.folder / ASSETS).glob("*.json"))}
    call = jax.jit(self.exported.call)
    self.logits = lambda inputs: call(self.params, inputs)


def load(folder: str, *, max_batch: int = 64, max_image_pixels: int | None = None) -> predict.Predictor:
  """A `Predictor` over an exported artifact (`predictor.top_k(texts, k)`, `predictor.logits(ids)`)."""
  artifact = Artifact(folder)
  predictor = predict.Predictor(artifact.logits, artifact.info, artifact.assets, max_batch=max_batch,
                                max_image_pixels=max_image_pixels)
  predictor.artifact = artifact
  return predictor
