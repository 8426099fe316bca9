"""Reaching into a model's graph by the paths `nnx.iter_graph` yields (attribute names and list indices)."""
import functools


def _child(node, key):
  return node[key] if isinstance(key, int) else getattr(node, key)


def node_at(model, path: tuple):
  """The node at `path` in `model`."""
  return functools.reduce(_child, path, model)


def replace(model, path: tuple, make) -> None:
  """Replaces the node at `path` (not empty) in place by make(that node)."""
  parent, key = node_at(model, path[:-1]), path[-1]
  if isinstance(key, int):
    parent[key] = make(parent[key])
  else:
    setattr(parent, key, make(getattr(parent, key)))
