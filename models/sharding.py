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


def divisible_spec(mesh, axes_per_dim, shape) -> P:
  """PartitionSpec of `axes_per_dim` (per dimension: None, a mesh axis, or a tuple of them) with each dimension
  that its axes do not divide kept whole (20 classes over 8 devices): parameters and activations alike."""
  def size(axes):
    return math.prod(mesh.shape[a] for a in ((axes,) if isinstance(axes, str) else axes or ()))
  return P(*(axes if n % size(axes) == 0 else None for n, axes in zip(shape, axes_per_dim)))


def constrain(x, names: tuple):
  """x with jax.lax.with_sharding_constraint to the sharding its logical axis `names` (one per dimension,
  None = whole) map to under the current `activation_sharding` (divisible_spec). x itself outside that
  context or on a one-device mesh."""
  mesh, rules = getattr(_context, "value", None) or (None, None)
  if mesh is None or mesh.size == 1:
    return x
  axes = [rules.get(name) if name is not None else None for name in names]
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, divisible_spec(mesh, axes, x.shape)))
