"""Sharding constraints on a model's activations, from the mesh and the logical-axis rules the steps trace
under.

A parameter's sharding comes from its logical axis names (trainer/mesh.py's rules). An activation's is left
to XLA's sharding propagation, which meets a conflict under FSDP: a batch split over (data, fsdp) and a
weight split along 'embed' over fsdp. Unconstrained, XLA may resolve it by gathering the batch rather than
the weight, so that every chip computes every sequence (a compile-only plan of a 4-layer Llama-3-8B slice
on v5p-64: BENCHMARKS.md, issue 33). MaxText constrains its activations for this reason
(`nn.with_logical_constraint`); flaxforge's transformer does so between blocks, by logical names.

The train, eval and predict steps trace their model under `activation_sharding(mesh, rules)`; outside it
(a model called eagerly, generation, export) and on a one-device mesh `constrain` returns its input.
"""
import contextlib
import math
import threading

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

_context = threading.local()


@contextlib.contextmanager
def activation_sharding(mesh, rules):
  """Within it, `constrain` maps logical names to `mesh`'s axes by `rules` ((name, mesh axes) pairs: None,
  an axis name or a tuple of them, as trainer/mesh.py's RULES)."""
  previous = getattr(_context, "value", None)
  _context.value = (mesh, dict(rules))
  try:
    yield
  finally:
    _context.value = previous


def constrain(x, names: tuple):
  """x with jax.lax.with_sharding_constraint to the sharding its logical axis `names` (one per dimension,
  None = whole) map to under the current `activation_sharding`; a dimension its mesh axes do not divide stays
  whole. x itself outside that context or on a one-device mesh."""
  mesh, rules = getattr(_context, "value", None) or (None, None)
  if mesh is None or mesh.size == 1:
    return x
  spec = []
  for size, name in zip(x.shape, names):
    axes = rules.get(name) if name is not None else None
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    spec.append(axes if axes and size % math.prod(mesh.shape[a] for a in axes) == 0 else None)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(*spec)))
