"""A small image ConvNet: stages of [3x3 conv -> ReLU] x convs_per_stage -> 2x2 max pool, then a dense
hidden layer and the class logits, with dropout before each dense layer.

Inputs are float images [B, H, W, C] (or [B, H, W] grey); parameters name their axes (conv output
channels and dense units on `mlp`, inputs on `embed`), so the mesh's rules shard them.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from flaxforge.models import fields
from flaxforge.models.initializers import zeros

_he = nnx.initializers.he_normal()


class ConvNet(nnx.Module):

  def __init__(self, input_shape, num_classes: int, options: fields.ConvNet = fields.ConvNet(), *, rngs: nnx.Rngs):
    channels, convs_per_stage, dense = options.channels, options.convs_per_stage, options.dense
    height, width, *rest = input_shape
    in_channels = rest[0] if rest else 1
    self.convs = nnx.List()
    for out_channels in channels:
      for _ in range(convs_per_stage):
        self.convs.append(nnx.Conv(in_channels, out_channels, (3, 3), padding="SAME", rngs=rngs,
                                   kernel_init=nnx.with_partitioning(_he, (None, None, "embed", "mlp")),
                                   bias_init=zeros(("mlp",))))
        in_channels = out_channels
      height, width = height // 2, width // 2
    self.convs_per_stage = convs_per_stage
    self.hidden = nnx.Linear(height * width * in_channels, dense, rngs=rngs,
                             kernel_init=nnx.with_partitioning(_he, ("embed", "mlp")),
                             bias_init=zeros(("mlp",)))
    self.out = nnx.Linear(dense, num_classes, rngs=rngs,
                          kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), ("mlp", "classes")),
                          bias_init=zeros(("classes",)))
    self.dropout = nnx.Dropout(options.dropout, rngs=rngs)

  def __call__(self, inputs):  # float [B, H, W, C] or [B, H, W] -> float32 logits [B, classes]
    x = inputs.astype(jnp.float32)
    x = x[..., None] if x.ndim == 3 else x
    for i, conv in enumerate(self.convs):
      x = jax.nn.relu(conv(x))
      if (i + 1) % self.convs_per_stage == 0:
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
    x = self.dropout(x.reshape(x.shape[0], -1))
    x = self.dropout(jax.nn.relu(self.hidden(x)))
    return self.out(x)


def from_config(cfg, info, *, rngs: nnx.Rngs) -> ConvNet:
  return ConvNet(info["input_shape"], info["num_classes"], fields.ConvNet.read(cfg), rngs=rngs)


def flops_per_example(cfg, info) -> float:
  """Counted as registry.flops_per_example says: less the first convolution's input gradient."""
  options = fields.ConvNet.read(cfg)
  height, width, *rest = info["input_shape"]
  cin, forward, first = (rest[0] if rest else 1), 0, None
  for cout in options.channels:
    for _ in range(options.convs_per_stage):
      layer = 2 * height * width * 9 * cin * cout
      first = layer if first is None else first
      forward, cin = forward + layer, cout
    height, width = height // 2, width // 2
  forward += 2 * (height * width * cin * options.dense + options.dense * info["num_classes"])
  return 3 * forward - first
