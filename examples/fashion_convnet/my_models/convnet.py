"""The project's own Flax NNX ConvNet for 28x28 grey images: two [conv -> batch norm -> ReLU -> 2x2 max
pool] stages, then dropout and the class logits. flaxforge finds it by import path
(`--config.model.name=my_models.convnet`) and builds it through `from_config`; the fields it reads
(`model.widths`, `model.dropout`) are declared in ../config.py, so `--config.model.widths=(16,32)` works.

Parameters name their logical axes (`embed` for inputs, `mlp` for channels), so the trainer's mesh rules
can shard them; parameters without names would be replicated (the run says so once).
"""
import jax
from flax import nnx


def _named(*axes, init=nnx.initializers.he_normal()):
  return nnx.with_partitioning(init, axes)


class FashionConvNet(nnx.Module):

  def __init__(self, input_shape, num_classes: int, *, widths=(32, 64), dropout=0.2, rngs: nnx.Rngs):
    height, width, in_channels = input_shape
    self.convs, self.norms = nnx.List(), nnx.List()
    for channels in widths:
      self.convs.append(nnx.Conv(in_channels, channels, (3, 3), padding="SAME", use_bias=False, rngs=rngs,
                                 kernel_init=_named(None, None, "embed", "mlp")))
      self.norms.append(nnx.BatchNorm(channels, rngs=rngs, scale_init=_named("mlp", init=nnx.initializers.ones),
                                      bias_init=_named("mlp", init=nnx.initializers.zeros)))
      in_channels, height, width = channels, height // 2, width // 2
    self.dropout = nnx.Dropout(dropout, rngs=rngs)
    self.out = nnx.Linear(height * width * in_channels, num_classes, rngs=rngs,
                          kernel_init=_named("embed", "classes", init=nnx.initializers.lecun_normal()),
                          bias_init=_named("classes", init=nnx.initializers.zeros))

  def __call__(self, images):  # float32 [batch, 28, 28, 1] -> float32 logits [batch, classes]
    x = images
    for conv, norm in zip(self.convs, self.norms):
      x = nnx.max_pool(jax.nn.relu(norm(conv(x))), (2, 2), strides=(2, 2))
    return self.out(self.dropout(x.reshape(x.shape[0], -1)))


def from_config(cfg, info, *, rngs: nnx.Rngs) -> FashionConvNet:
  """cfg: the config's `model` section; info: the dataset's metadata (input_shape [28, 28, 1], num_classes)."""
  return FashionConvNet(info["input_shape"], info["num_classes"], widths=tuple(cfg.widths),
                        dropout=cfg.dropout, rngs=rngs)
