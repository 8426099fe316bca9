"""The multilayer perceptron of the seed's sections 3-4, every choice from config (fields.MLP)."""
import math

import jax.numpy as jnp
from flax import nnx

from flaxforge.models import fields, initializers


class MLP(nnx.Module):
  """in_features -> options.hidden widths (each: dense, activation, dropout) -> out_features logits."""

  def __init__(self, in_features: int, out_features: int, options: fields.MLP = fields.MLP(), *, rngs: nnx.Rngs):
    kinit = initializers.initializer(options.kernel_init, std=options.init_std, limit=options.init_limit)
    binit = initializers.initializer(options.bias_init, std=options.init_std, limit=options.init_limit)
    sizes = [in_features, *options.hidden, out_features]
    self.layers = nnx.List([
        nnx.Linear(a, b, rngs=rngs,
                   kernel_init=nnx.with_partitioning(kinit, ("embed", "mlp")),
                   bias_init=nnx.with_partitioning(binit, ("mlp",)))
        for a, b in zip(sizes[:-1], sizes[1:])
    ])
    self.activation = initializers.ACTIVATIONS[options.activation]
    self.dropout = nnx.Dropout(options.dropout, rngs=rngs)

  def __call__(self, inputs):
    x = inputs.reshape(inputs.shape[0], -1).astype(jnp.float32)
    for layer in self.layers[:-1]:
      x = self.dropout(self.activation(layer(x)))
    return self.layers[-1](x)


def from_config(cfg, info, *, rngs: nnx.Rngs) -> MLP:
  return MLP(math.prod(info["input_shape"]), info["num_classes"], fields.MLP.read(cfg), rngs=rngs)


def flops_per_example(cfg, info) -> float:
  return mlp_flops_per_example([math.prod(info["input_shape"]), *fields.MLP.read(cfg).hidden, info["num_classes"]])


def mlp_flops_per_example(layer_sizes, *, training=True):
  """Dense stack, layer_sizes = [in, hidden..., out], counted as registry.flops_per_example says: no framework
  computes the input gradient of the first layer (its input is data)."""
  forward = 2 * sum(a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))
  return 3 * forward - 2 * layer_sizes[0] * layer_sizes[1] if training else forward
