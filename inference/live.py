"""A trained run's checkpoint as the function a `Predictor` calls: its model alone restored onto this
process's devices (trainer/restore.py, model_only) and jitted on its mesh, the batch split over it. The live
counterpart of an exported artifact (serving/artifact.py), which runs without flax and the models; so
predict.py imports this module only when a Predictor is made from a work directory."""
import jax
from flax import nnx

from flaxforge.trainer import mesh as mesh_lib, restore


def load(workdir: str, *, step: int | None = None, best: bool = False, model=None):
  """(the restored run, its `logits(inputs)`, the batch divisor its mesh needs) for `Predictor`."""
  run = restore.restore(workdir, step=step, best=best, model=model, model_only=True)
  return run, logits(run), mesh_lib.batch_divisor(run.mesh)


def logits(run: restore.Restored):
  """`logits(inputs)` of a restored run's model in eval mode: float32 [B, outputs] for inputs [B, ...] (B a
  multiple of the batch divisor), jitted on its mesh."""

  def apply(state, inputs):
    model, _ = nnx.merge(run.structure.eval_graphdef, state)
    return model(inputs).astype("float32")

  jitted = jax.jit(apply, in_shardings=(run.structure.shardings, mesh_lib.batch_sharding(run.mesh)),
                   out_shardings=mesh_lib.replicated(run.mesh))
  return lambda inputs: jitted(run.state, inputs)
