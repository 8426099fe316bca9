"""A trained run's checkpoint as the function a `Predictor` calls: its model alone restored onto this
process's devices (trainer/restore.py, model_only) and jitted on its mesh, the batch split over it. The live
counterpart of an exported artifact (serving/artifact.py), which runs without flax and the models; so
predict.py imports this module only when a Predictor is made from a work directory."""
import jax
import numpy as np
from flax import nnx

from flaxforge.trainer import mesh as mesh_lib, restore


def load(workdir: str, *, step: int | None = None, best: bool = False, model=None):
  """(the restored run, its `logits(inputs)`, the batch divisor its mesh needs) for `Predictor`."""
  run = restore.restore(workdir, step=step, best=best, model=model, model_only=True)
  return run, Logits(run), mesh_lib.batch_divisor(run.mesh)


class Logits:
  """`logits(inputs)` of a restored run's model in eval mode: float32 [B, outputs] for inputs [B, ...] (B a
  multiple of the batch divisor), jitted on its mesh. `compile(shape, dtype)` compiles it for that input shape
  ahead of time, without running it (the server's warm-up: running MiniLM on a padded batch of 64 zeros costs
  as much as compiling it); a call with that shape then uses the compiled program."""

  def __init__(self, run: restore.Restored):
    def apply(state, inputs):
      model, _ = nnx.merge(run.structure.eval_graphdef, state)
      return model(inputs).astype("float32")

    self._state, self._batch = run.state, mesh_lib.batch_sharding(run.mesh)
    self._jitted = jax.jit(apply, in_shardings=(run.structure.shardings, self._batch),
                           out_shardings=mesh_lib.replicated(run.mesh))
    self._compiled = {}

  def compile(self, shape, dtype) -> None:
    key = (tuple(shape), np.dtype(dtype).str)
    if key not in self._compiled:
      spec = jax.ShapeDtypeStruct(shape, np.dtype(dtype), sharding=self._batch)
      self._compiled[key] = self._jitted.lower(self._state, spec).compile()

  def __call__(self, inputs):
    compiled = self._compiled.get((inputs.shape, inputs.dtype.str))
    return (compiled or self._jitted)(self._state, inputs)
