"""Activations and weight initialisers by name, as the config spells them (models/fields.py declares the
names), and the initialisers that name their parameters' logical axes (trainer/mesh.py shards by them).

Every built-in model imports this module, which lets a model be built outside a mesh (tests, notebooks,
`hf.load`): parameters get their shardings from the trainer's jitted init (`out_shardings`), where Flax's
eager sharding would demand a mesh at construction.
"""
import flax
import jax
import jax.numpy as jnp
from flax import nnx

flax.config.update("flax_always_shard_variable", False)

ACTIVATIONS = {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
}


def _uniform(limit: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)
  return init


def initializer(name: str, *, std: float, limit: float):
  """`normal` (std), `uniform` (in [-limit, limit]), `zeros`, or a fan-scaled family: lecun_normal/
  lecun_uniform, xavier_normal/xavier_uniform (= glorot_*), he_normal/he_uniform."""
  inits = nnx.initializers
  table = {
      "normal": lambda: inits.normal(std),
      "uniform": lambda: _uniform(limit),
      "zeros": inits.zeros_init,
      "lecun_normal": inits.lecun_normal,
      "lecun_uniform": inits.lecun_uniform,
      "xavier_normal": inits.xavier_normal,
      "xavier_uniform": inits.xavier_uniform,
      "glorot_normal": inits.glorot_normal,
      "glorot_uniform": inits.glorot_uniform,
      "he_normal": inits.he_normal,
      "he_uniform": inits.he_uniform,
  }
  return table[name]()


def normal(std: float, names: tuple):
  """Normal(0, std) parameters with logical axes `names`."""
  return nnx.with_partitioning(nnx.initializers.normal(std), names)


def zeros(names: tuple):
  """Zero parameters with logical axes `names`."""
  return nnx.with_partitioning(nnx.initializers.zeros_init(), names)
