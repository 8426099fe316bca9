"""Exporting a trained classifier or regressor run as a self-contained artifact (layout: serving/artifact.py).

The inference function is `logits(params, inputs)` serialised with `jax.export`, the batch dimension
symbolic ("batch"), so one artifact serves any batch size. The weights are its first argument, stored as
safetensors, not constants baked into the program: the program stays small and the weights stay readable
by any safetensors reader.

Compatibility: `jax.export` guarantees that a serialised function stays loadable by JAX releases made up
to 6 months after the one that exported it (backward compatibility), and by JAX up to 3 weeks older
(forward compatibility) (docs.jax.dev/en/latest/export/export.html, "Compatibility guarantees"). An artifact
is therefore a deployment format, not an archive: the checkpoint is the source of truth, and
`flaxforge export --workdir=RUN --out=DIR` re-exports it with the JAX at hand.
"""
import importlib.metadata
import json

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import numpy as safetensors_numpy

from flaxforge.core import paths
from flaxforge.serving import artifact as artifact_lib
from flaxforge.inference import predict
from flaxforge.trainer import restore


def _key(path) -> str:
  return ".".join(str(p) for p in path)


def _path(key: str) -> tuple:
  return tuple(int(p) if p.isdigit() else p for p in key.split("."))


def export(workdir: str, out: str, *, step: int | None = None, best: bool = False,
           platforms: tuple[str, ...] | None = None) -> dict:
  """Writes the artifact of a classifier or regressor run's checkpoint (latest, `step` or `best`) to `out`.

  `platforms`: the platforms the program is lowered for ("cpu", "cuda", "rocm", "tpu"); default, this
  process's backend. Returns the manifest. Raises UserError for a run that is neither a classifier nor a
  regressor, or an `out` that exists and is not an earlier export.
  """
  run = restore.restore(workdir, step=step, best=best, model_only=True)
  assets = predict.load_assets(run.workdir)
  predictor = predict.Predictor(None, run.info, assets)  # checks it is a classifier or regressor with an encoder
  model, _ = nnx.merge(run.structure.eval_graphdef, jax.device_get(run.state))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  weights = {_key(path): np.asarray(v[...]) for path, v in nnx.to_flat_state(params)}

  def logits(params, inputs):
    state = nnx.from_flat_state([(_path(k), v) for k, v in params.items()])
    return nnx.merge(graphdef, state, rest)(inputs).astype(jnp.float32)

  shape, dtype = predictor.encode.signature
  batch, = jax.export.symbolic_shape("batch")
  platforms = tuple(platforms or (jax.default_backend(),))
  exported = jax.export.export(jax.jit(logits), platforms=platforms)(
      {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in weights.items()},
      jax.ShapeDtypeStruct((batch, *shape), dtype))

  folder = paths.fresh_folder(out, artifact_lib.MANIFEST)
  (folder / artifact_lib.FUNCTION).write_bytes(exported.serialize())
  safetensors_numpy.save_file(weights, str(folder / artifact_lib.WEIGHTS))
  paths.usual_permissions(folder / artifact_lib.WEIGHTS)
  (folder / artifact_lib.INFO).write_text(json.dumps(run.info, indent=2, sort_keys=True))
  (folder / artifact_lib.ASSETS).mkdir()
  for name, value in assets.items():
    (folder / artifact_lib.ASSETS / f"{name}.json").write_text(json.dumps(value, indent=2, sort_keys=True))
  hashes = artifact_lib.file_hashes(folder)
  manifest = {
      "format": artifact_lib.FORMAT, "format_version": artifact_lib.FORMAT_VERSION,
      "model": run.config.model.name, "step": run.step, "source": str(run.workdir),
      "function": {
          "file": artifact_lib.FUNCTION, "call": "logits(params, inputs)",
          "params": f"{artifact_lib.WEIGHTS}: {len(weights)} float arrays by parameter path",
          "inputs": {"shape": ["batch", *shape], "dtype": dtype,
                     "encoding": predictor.modality.name},
          "outputs": {"shape": ["batch", len(predictor.labels) or 1], "dtype": "float32",
                      "meaning": ("the predicted value" if predictor.task == "regression" else
                                  "logits; softmax gives the probabilities of assets/labels.json in order")},
          "platforms": list(platforms), "serialization_version": exported.calling_convention_version,
      },
      "jax_version": jax.__version__, "flaxforge_version": importlib.metadata.version("flaxforge"),
      "files": hashes, "content_hash": artifact_lib.content_hash(hashes),
  }
  (folder / artifact_lib.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
  return manifest
