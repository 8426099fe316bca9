"""Deploying a trained run: `export(workdir, out)` writes a self-contained artifact (jax.export program,
safetensors weights, JSON assets, manifest); `load(folder)` runs it as a `Predictor` with only jax,
numpy, safetensors and the preprocessing (no model code); `flaxforge.serving.server` serves either over HTTP.
"""


def export(workdir: str, out: str, **kwargs) -> dict:
  """See `flaxforge.serving.export_artifact.export` (imported here on use: it needs the models, loading does not)."""
  from flaxforge.serving import export_artifact  # pylint: disable=g-import-not-at-top
  return export_artifact.export(workdir, out, **kwargs)


def load(folder: str, **kwargs):
  """See `flaxforge.serving.artifact.load`."""
  from flaxforge.serving import artifact  # pylint: disable=g-import-not-at-top
  return artifact.load(folder, **kwargs)
