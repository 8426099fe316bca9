"""Dropout that draws 16 random bits per element instead of 32.

nnx.Dropout draws a float32 uniform per element (one 32-bit threefry output, converted to float) and keeps
the element where it is below 1 - rate. This one splits each 32-bit threefry output into two 16-bit integers
and keeps an element where its integer is below round((1 - rate) * 2**16), scaling the kept values by 2**16
over that threshold, so the output's mean equals the input's exactly. The keep probability moves from
1 - rate by at most 2**-17 (rate 0.1: 0.899994). Half the random bits make dropout's share of a
transformer's step on XLA:CPU smaller (BENCHMARKS.md, "Dropout with 16-bit draws").
"""
import jax
import jax.numpy as jnp
from flax import nnx


class Dropout(nnx.Dropout):
  """nnx.Dropout with 16-bit draws (see the module docstring): the same constructor, state and train/eval
  switch. inputs: any shape and float dtype. An odd last dimension, broadcast_dims or rngs passed at call
  time fall back to nnx.Dropout."""

  def __call__(self, inputs, *, deterministic=None, rngs=None):
    deterministic = self.deterministic if deterministic is None else deterministic
    threshold = round((1.0 - self.rate) * 2**16)
    if (deterministic or not 0 < threshold < 2**16 or rngs is not None or self.rngs is None
        or self.broadcast_dims or inputs.ndim == 0 or inputs.shape[-1] % 2):
      return super().__call__(inputs, deterministic=deterministic, rngs=rngs)
    words = jax.random.bits(self.rngs(), inputs.shape[:-1] + (inputs.shape[-1] // 2,), jnp.uint32)
    draws = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(inputs.shape)
    scale = jnp.asarray(2**16 / threshold, inputs.dtype)
    return jax.lax.select(draws < jnp.uint16(threshold), inputs * scale, jnp.zeros_like(inputs))
