"""Warm start (`train.init_from`): a new run starts from another run's parameters with a fresh optimizer.

The other run is restored through the same path eval uses (its own config.json rebuilds its model, the
fingerprints are checked), then each parameter of the new model whose name and shape match one of the
other's is copied onto the new run's sharding; the rest keep their fresh initialisation and are listed.
"""
import jax
from etils import epath
from flax import nnx

from flaxforge.core.errors import UserError
from flaxforge.trainer import restore, workdir as workdir_lib

# What a model learns (the optimizer's moments are OptState); RNG streams start from the new run's seed.
_COPIED = nnx.Any(nnx.Param, nnx.BatchStat)


def source(path: str) -> tuple[epath.Path, int | None]:
  """(work directory, step or None for its latest) of `path`: a work directory or one of its
  `checkpoints/<step>` directories."""
  p = workdir_lib.resolve(path)
  if p.name.isdigit() and p.parent.name == workdir_lib.CHECKPOINTS:
    return p.parent.parent, int(p.name)
  if (p / workdir_lib.CHECKPOINTS).exists():
    return p, None
  raise UserError(f"train.init_from={path} is neither a work directory with checkpoints nor a "
                  "WORKDIR/checkpoints/<step> directory; point --config.train.init_from at one")


def apply(path: str, state, mesh, model=None) -> tuple[object, str]:
  """`state` (a fresh train state) with the model parameters of the run at `path` copied in where names
  and shapes match; and one line saying what was copied and what was freshly initialised.
  `model`: the new run's model factory, used to rebuild the other run if it was trained with one too."""
  workdir, step = source(path)
  other_name = workdir_lib.load_config(workdir).model.name
  other = restore.restore(str(workdir), step=step, devices=list(mesh.devices.flat),
                          model=model if ":" in other_name else None)
  theirs = named_leaves(nnx.filter_state(other.state, _COPIED))
  ours = named_leaves(nnx.filter_state(state, _COPIED))
  fresh = [f"{n[2:]} {tuple(x.shape)}" + (f" (theirs {tuple(theirs[n].shape)})" if n in theirs else "")
           for n, x in ours.items() if n not in theirs or theirs[n].shape != x.shape]
  copied = {n for n, x in ours.items() if n in theirs and theirs[n].shape == x.shape}
  if not copied:
    raise UserError(f"no parameter of the run in {workdir} fits this model (names or shapes differ); "
                    "drop --config.train.init_from or start from a run of this architecture")

  def take(path_, x):
    name = _name(path_)
    return jax.device_put(theirs[name].astype(x.dtype), x.sharding) if name in copied else x
  line = (f"warm start from step {other.step} in {workdir}: copied {len(copied)} of {len(ours)} parameter arrays; "
          f"freshly initialised: {', '.join(fresh) or 'none'}")
  return jax.tree_util.tree_map_with_path(take, state), line


def named_leaves(tree) -> dict:
  """{name: leaf}; in a (model, optimizer) train state the model's names start with '0.'."""
  return {_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _name(path) -> str:
  """'0.layers.1.kernel' for the path of an NNX state leaf."""
  parts = [getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path]
  return ".".join(str(p) for p in parts if p != "value")
