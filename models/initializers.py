"""Activations and weight initialisers by name, as the config spells them."""
import jax
import jax.numpy as jnp
from flax import nnx

from flaxforge.core.errors import UserError

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "linear": lambda x: x,
}


def activation(name: str):
  if name not in ACTIVATIONS:
    raise UserError(f"unknown activation {name!r}; use one of: {', '.join(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def _uniform(limit: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)
  return init


def initializer(name: str, *, std: float = 0.01, limit: float = 0.05, value: float = 0.0):
  """`normal` (std), `uniform` (in [-limit, limit]), `constant`/`zeros`, or a fan-scaled family:
  lecun_normal/lecun_uniform, xavier_normal/xavier_uniform (= glorot_*), he_normal/he_uniform."""
  inits = nnx.initializers
  table = {
      "normal": lambda: inits.normal(std),
      "uniform": lambda: _uniform(limit),
      "zeros": inits.zeros_init,
      "constant": lambda: inits.constant(value),
      "lecun_normal": inits.lecun_normal,
      "lecun_uniform": inits.lecun_uniform,
      "xavier_normal": inits.xavier_normal,
      "xavier_uniform": inits.xavier_uniform,
      "glorot_normal": inits.glorot_normal,
      "glorot_uniform": inits.glorot_uniform,
      "he_normal": inits.he_normal,
      "he_uniform": inits.he_uniform,
  }
  if name not in table:
    raise UserError(f"unknown initializer {name!r}; use one of: {', '.join(table)}")
  return table[name]()
