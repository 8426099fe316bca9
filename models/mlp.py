"""The multilayer perceptron of the seed's sections 3-4, every choice from config."""
import math

import jax.numpy as jnp
from flax import nnx

from flaxforge.models import initializers


class MLP(nnx.Module):

  def __init__(self, in_features: int, hidden: tuple[int, ...], out_features: int, *, activation="relu",
               kernel_init="lecun_normal", bias_init="zeros", init_std=0.01, init_limit=0.05,
               dropout=0.0, rngs: nnx.Rngs):
    kinit = initializers.initializer(kernel_init, std=init_std, limit=init_limit)
    binit = initializers.initializer(bias_init, std=init_std, limit=init_limit)
    sizes = [in_features, *hidden, out_features]
    self.layers = nnx.List([
        nnx.Linear(a, b, rngs=rngs,
                   kernel_init=nnx.with_partitioning(kinit, ("embed", "mlp")),
                   bias_init=nnx.with_partitioning(binit, ("mlp",)))
        for a, b in zip(sizes[:-1], sizes[1:])
    ])
    self.activation = initializers.activation(activation)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, inputs):
    x = inputs.reshape(inputs.shape[0], -1).astype(jnp.float32)
    for layer in self.layers[:-1]:
      x = self.dropout(self.activation(layer(x)))
    return self.layers[-1](x)


def from_config(cfg, info, *, rngs: nnx.Rngs) -> MLP:
  return MLP(math.prod(info["input_shape"]), tuple(cfg.hidden), info["num_classes"],
             activation=cfg.activation, kernel_init=cfg.kernel_init, bias_init=cfg.bias_init,
             init_std=cfg.init_std, init_limit=cfg.init_limit, dropout=cfg.dropout, rngs=rngs)


def flops_per_example(cfg, info) -> float:
  return mlp_flops_per_example([math.prod(info["input_shape"]), *cfg.hidden, info["num_classes"]])


# FLOP convention (as in shared/bench/common.py): FLOPs = 2 x the multiply-accumulates of matmuls and
# convolutions; embeddings, activations, softmax, norms, pooling and the optimizer are not counted. A training
# step costs 3 x forward, except where an input gradient is never needed (a first layer fed by data).
def mlp_flops_per_example(layer_sizes, *, training=True):
  """Dense stack, layer_sizes = [in, hidden..., out]."""
  forward = 2 * sum(a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))
  if not training:
    return forward
  # No framework computes the input gradient of the first layer (its input is data).
  return 3 * forward - 2 * layer_sizes[0] * layer_sizes[1]
