"""The device mesh (axes data, fsdp, tensor) and the one table that maps logical axis names to them."""
import math
import sys

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from flaxforge.core.errors import UserError
from flaxforge.models import sharding
from flaxforge.trainer import fields

AXES = ("data", "fsdp", "tensor")

# Logical name (as models annotate parameters) -> mesh axes. Batches split over data and fsdp; FSDP shards
# the model dimension of every weight; tensor parallelism splits the MLP, attention heads and vocabulary.
RULES = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("qkv", None),
    ("vocab", "tensor"),
    ("classes", None),
    ("length", None),
    ("norm", None),
)

BATCH_AXES = ("data", "fsdp")


def make_mesh(cfg, devices=None) -> Mesh:
  """`cfg` is `config.mesh` (or a dict of it): sizes for data, fsdp and tensor, where one of them may be -1
  ("the rest")."""
  devices = list(devices if devices is not None else jax.devices())
  sizes = [getattr(fields.Mesh.read(cfg), a) for a in AXES]
  if sizes.count(-1) > 1:
    raise UserError(f"mesh sizes {dict(zip(AXES, sizes))}: give at most one -1 (\"the rest\"), e.g. "
                    "--config.mesh.data=-1 --config.mesh.fsdp=2")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise UserError(f"mesh {dict(zip(AXES, sizes))}: {len(devices)} devices are not divisible by {known}; "
                      f"choose sizes whose product divides {len(devices)} ({_divisors(len(devices))})")
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise UserError(f"mesh {dict(zip(AXES, sizes))} needs {math.prod(sizes)} devices but {len(devices)} are "
                    f"available; make data*fsdp*tensor = {len(devices)} (or set one axis to -1 and the others "
                    f"to divisors of {len(devices)}: {_divisors(len(devices))})")
  grid = np.asarray(devices).reshape(sizes)
  return Mesh(grid, AXES, axis_types=(AxisType.Auto,) * len(AXES))


def mesh_for(cfg, devices=None) -> Mesh:
  """`cfg` is `config.mesh`: the run's own mesh when these devices allow it, else data parallelism over them
  all (a checkpoint restores onto any layout, so eval on a laptop still works for a run trained on a slice)."""
  try:
    return make_mesh(cfg, devices)
  except UserError:
    return make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, devices)


def _divisors(n: int) -> str:
  return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def batch_divisor(mesh: Mesh) -> int:
  return mesh.shape["data"] * mesh.shape["fsdp"]


def batch_sharding(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
  """Batch dimension split over (data, fsdp); `leading_axes` unsplit axes before it (stacked steps)."""
  return NamedSharding(mesh, P(*([None] * leading_axes), BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def rules(extra=()) -> tuple:
  """RULES with a config's own `(name, mesh axes)` pairs (`config.mesh.rules`) first, so they may also
  override a built-in name. Mesh axes are None (keep whole), one of AXES, or a tuple of them."""
  extra = tuple((str(name), tuple(axes) if isinstance(axes, (list, tuple)) else axes) for name, axes in extra)
  for name, axes in extra:
    if any(a is not None and a not in AXES for a in (axes if isinstance(axes, tuple) else (axes,))):
      raise UserError(f"config.mesh.rules maps {name!r} to {axes!r}; map each name to None or to mesh axes "
                      f"among {', '.join(AXES)}")
  return extra + tuple(r for r in RULES if r[0] not in {n for n, _ in extra})


def state_shardings(abstract_state, mesh: Mesh, extra_rules=()):
  """NamedShardings for an (abstract) nnx.State from the parameters' logical axis annotations and
  `rules(extra_rules)`. Parameters without names are replicated (said once, on process 0, when the mesh
  has more than one device); a name without a rule is a UserError naming config.mesh.rules.

  A dimension that its mesh axes do not divide (20 classes over 8 devices) stays whole on every device.
  """
  table = rules(extra_rules)
  _check_names(abstract_state, dict(table), mesh.size)
  with nnx.logical_axis_rules(table):
    specs = nnx.get_partition_spec(abstract_state)

  def fit(spec, leaf):
    return NamedSharding(mesh, sharding.divisible_spec(mesh, spec, leaf.shape))

  return jax.tree.map(fit, specs, abstract_state, is_leaf=lambda x: isinstance(x, P))


_told = set()


def _check_names(abstract_state, table: dict, devices: int):
  unnamed = []
  for path, variable in nnx.to_flat_state(abstract_state):
    names = variable.get_metadata().get("out_sharding")
    where = ".".join(str(p) for p in path[1:])
    if names is None:
      if path[0] == 0 and isinstance(variable, nnx.Param) and variable.ndim:
        unnamed.append(where)  # path[0] == 0: the model half of (model, optimizer)
      continue
    for name in names:
      if name is not None and name not in table:
        raise UserError(f"parameter {where} names the axis {name!r}, which has no mesh rule; add one to the "
                        f"config, e.g. config.mesh.rules = (({name!r}, None),) to keep it whole or "
                        f"(({name!r}, \"fsdp\"),) to shard it")
  if unnamed and devices > 1 and jax.process_index() == 0 and tuple(unnamed) not in _told:  # moot on one
    _told.add(tuple(unnamed))
    shown = ", ".join(unnamed[:4]) + (f" and {len(unnamed) - 4} more" if len(unnamed) > 4 else "")
    print(f"note: {len(unnamed)} parameters carry no logical axis names and are replicated on every device: "
          f"{shown} (name their axes with nnx.with_partitioning to shard them)", file=sys.stderr)

