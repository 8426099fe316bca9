"""Prediction from a work directory: the stored encoder turns raw inputs into what the model saw."""
import jax
import numpy as np

from flaxforge.data import text as text_lib
from flaxforge.trainer import mesh as mesh_lib, restore, steps, workdir as workdir_lib
from flaxforge.core.errors import UserError


class TextClassifier:

  def __init__(self, run: restore.Restored, encoder, labels: list[str]):
    self.run, self.encoder, self.labels = run, encoder, labels
    self._predict = steps.make_predict_step(run.structure, run.mesh)
    self._batch = 8 * mesh_lib.batch_divisor(run.mesh)

  @classmethod
  def from_workdir(cls, workdir: str, *, step: int | None = None, best: bool = False) -> "TextClassifier":
    run = restore.restore(workdir, step=step, best=best)
    try:
      encoder = text_lib.encoder_from_json(workdir_lib.load_asset(run.workdir, "text_encoder"))
    except UserError as e:
      raise UserError(f"{workdir} is not a text classifier run (no text encoder stored beside its checkpoints)") from e
    return cls(run, encoder, workdir_lib.load_asset(run.workdir, "labels"))

  def probabilities(self, texts: list[str]) -> np.ndarray:
    ids = self.encoder.encode(texts)
    n, batch = len(ids), self._batch
    padded = np.zeros((-(-n // batch) * batch, ids.shape[1]), ids.dtype)
    padded[:n] = ids
    sharding = mesh_lib.batch_sharding(self.run.mesh)
    out = [np.asarray(self._predict(self.run.state, jax.device_put(padded[i:i + batch], sharding)))
           for i in range(0, len(padded), batch)]
    return np.concatenate(out)[:n]

  def top_k(self, texts: list[str], k: int) -> list[list[tuple[str, float]]]:
    probs = self.probabilities(texts)
    order = np.argsort(-probs, axis=1)[:, :k]
    return [[(self.labels[j], float(p[j])) for j in row] for p, row in zip(probs, order)]
