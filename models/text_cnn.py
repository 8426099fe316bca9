"""The seed's Keras text CNN in Flax NNX: Embedding -> Conv1D -> MaxPool1D -> Conv1D -> GlobalMaxPool1D ->
Dense(relu) -> Dense(classes). Returns logits (the softmax lives in the loss). Keras' initialisers.

Conv1D is an im2col matmul, not `lax.conv`: inside the trainer's `lax.scan` of steps, XLA:CPU runs the
convolution's weight gradient as a naive loop (jax-ml/jax#12868).
"""
import jax
import jax.numpy as jnp
from flax import nnx

from flaxforge.core.errors import UserError
from flaxforge.models import fields, matmul
from flaxforge.models.initializers import zeros

_glorot = nnx.initializers.glorot_uniform()


def _keras_embedding_init(key, shape, dtype=jnp.float32):
  return jax.random.uniform(key, shape, dtype, -0.05, 0.05)


class Conv1D(nnx.Module):
  """'valid' 1-D convolution, stride 1: the k shifted views side by side, then one [k*cin, cout] matmul."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *, rngs: nnx.Rngs):
    self.kernel_size = kernel_size
    init = nnx.with_partitioning(_glorot, (None, None, "mlp"))  # glorot fans = k*cin, k*cout, as Keras
    self.kernel = nnx.Param(init(rngs.params(), (kernel_size, in_features, out_features)))
    self.bias = nnx.Param(zeros(("mlp",))(rngs.params(), (out_features,)))

  def __call__(self, x):  # [B, L, cin] -> [B, L - k + 1, cout]
    k, out_len = self.kernel_size, x.shape[1] - self.kernel_size + 1
    patches = jnp.concatenate([x[:, i:i + out_len] for i in range(k)], axis=-1)
    kernel = self.kernel[...].reshape(-1, self.kernel.shape[-1])
    return matmul.dot_general(patches, kernel, (((2,), (0,)), ((), ()))) + self.bias[...]


class TextCNN(nnx.Module):
  """`sizes` (fields.TextCNN; its defaults are the seed's) for vocab_size token ids of sequences of seq_len."""

  def __init__(self, vocab_size: int, num_classes: int, seq_len: int, sizes: fields.TextCNN = fields.TextCNN(), *,
               rngs: nnx.Rngs):
    s = sizes
    pooled = (seq_len - s.conv1_kernel + 1) // s.pool
    if pooled < s.conv2_kernel:
      raise UserError(f"seq_len {seq_len} is too short for this text CNN: it needs at least "
                      f"{s.conv1_kernel - 1 + s.pool * s.conv2_kernel}; raise --config.data.seq_len")
    self.pool = s.pool
    self.embed = nnx.Embed(vocab_size, s.embed_dim, rngs=rngs,
                           embedding_init=nnx.with_partitioning(_keras_embedding_init, ("vocab", "embed")))
    self.conv1 = Conv1D(s.embed_dim, s.conv1_filters, s.conv1_kernel, rngs=rngs)
    self.conv2 = Conv1D(s.conv1_filters, s.conv2_filters, s.conv2_kernel, rngs=rngs)
    self.hidden = nnx.Linear(s.conv2_filters, s.dense, rngs=rngs, dot_general=matmul.dot_general,
                             kernel_init=nnx.with_partitioning(_glorot, ("embed", "mlp")), bias_init=zeros(("mlp",)))
    self.out = nnx.Linear(s.dense, num_classes, rngs=rngs, dot_general=matmul.dot_general,
                          kernel_init=nnx.with_partitioning(_glorot, ("mlp", "classes")), bias_init=zeros(("classes",)))
    self.dropout = nnx.Dropout(s.dropout, rngs=rngs)

  def __call__(self, inputs):  # int32 [B, L] -> float32 [B, classes]
    h = jax.nn.relu(self.conv1(self.embed(inputs)))
    windows = h.shape[1] // self.pool  # MaxPool1D(pool): stride = pool, 'valid'
    h = h[:, :windows * self.pool].reshape(h.shape[0], windows, self.pool, -1).max(axis=2)
    h = jax.nn.relu(self.conv2(h)).max(axis=1)  # GlobalMaxPool1D
    h = self.dropout(jax.nn.relu(self.hidden(h)))
    return self.out(h)


def from_config(cfg, info, *, rngs: nnx.Rngs) -> TextCNN:
  """`cfg` is `config.model`. `info` gives vocab_size, num_classes, seq_len."""
  return TextCNN(info["vocab_size"], info["num_classes"], info["seq_len"], fields.TextCNN.read(cfg), rngs=rngs)


def flops_per_example(cfg, info) -> float:
  return text_cnn_flops_per_example(info["seq_len"], info["num_classes"], fields.TextCNN.read(cfg))


def text_cnn_flops_per_example(seq_len=100, num_classes=20, sizes: fields.TextCNN = fields.TextCNN(), *,
                               training=True):
  """Seed text CNN (by default at 20 Newsgroups' seq_len and classes): Embedding -> Conv1D(k, 'valid') ->
  MaxPool(pool) -> Conv1D(k) -> GlobalMaxPool -> Dense(dense) -> Dense(classes), counted as
  registry.flops_per_example says; the embedding output needs its gradient, so the first convolution's input
  gradient counts."""
  s = sizes
  l1 = seq_len - s.conv1_kernel + 1
  l2 = l1 // s.pool - s.conv2_kernel + 1
  macs = (l1 * s.conv1_kernel * s.embed_dim * s.conv1_filters + l2 * s.conv2_kernel * s.conv1_filters * s.conv2_filters
          + s.conv2_filters * s.dense + s.dense * num_classes)
  return 3 * 2 * macs if training else 2 * macs
