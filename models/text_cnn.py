"""The seed's Keras text CNN in Flax NNX: Embedding -> Conv1D -> MaxPool1D -> Conv1D -> GlobalMaxPool1D ->
Dense(relu) -> Dense(classes). Returns logits (the softmax lives in the loss). Keras' initialisers.

Conv1D is an im2col matmul, not `lax.conv`: inside the trainer's `lax.scan` of steps, XLA:CPU runs the
convolution weight gradient as a naive loop, 7-30x slower (jax-ml/jax#12868).
"""
import jax
import jax.numpy as jnp
from flax import nnx

from flaxforge.models import matmul
from flaxforge.core.errors import UserError

_glorot = nnx.initializers.glorot_uniform()
_zeros = nnx.initializers.zeros_init()


def _keras_embedding_init(key, shape, dtype=jnp.float32):
  return jax.random.uniform(key, shape, dtype, -0.05, 0.05)


class Conv1D(nnx.Module):
  """'valid' 1-D convolution, stride 1: the k shifted views side by side, then one [k*cin, cout] matmul."""

  def __init__(self, in_features: int, out_features: int, kernel_size: int, *, rngs: nnx.Rngs):
    self.kernel_size = kernel_size
    init = nnx.with_partitioning(_glorot, (None, None, "mlp"))  # glorot fans = k*cin, k*cout, as Keras
    self.kernel = nnx.Param(init(rngs.params(), (kernel_size, in_features, out_features)))
    self.bias = nnx.Param(nnx.with_partitioning(_zeros, ("mlp",))(rngs.params(), (out_features,)))

  def __call__(self, x):  # [B, L, cin] -> [B, L - k + 1, cout]
    k, out_len = self.kernel_size, x.shape[1] - self.kernel_size + 1
    patches = jnp.concatenate([x[:, i:i + out_len] for i in range(k)], axis=-1)
    kernel = self.kernel[...].reshape(-1, self.kernel.shape[-1])
    return matmul.dot_general(patches, kernel, (((2,), (0,)), ((), ()))) + self.bias[...]


# The seed's sizes: the defaults of `from_config`, the FLOP count and launch/configs/text_cnn_20ng.py.
SEED_SIZES = dict(embed_dim=16, conv1_filters=32, conv1_kernel=7, pool=7, conv2_filters=64, conv2_kernel=7,
                  dense=64, dropout=0.0)


class TextCNN(nnx.Module):

  def __init__(self, vocab_size: int, num_classes: int, seq_len: int, *, embed_dim, conv1_filters,
               conv1_kernel, pool, conv2_filters, conv2_kernel, dense, dropout, rngs: nnx.Rngs):
    pooled = (seq_len - conv1_kernel + 1) // pool
    if pooled < conv2_kernel:
      raise UserError(f"seq_len {seq_len} is too short for this text CNN: it needs at least "
                      f"{conv1_kernel - 1 + pool * conv2_kernel}; raise --config.data.seq_len")
    self.pool = pool
    self.embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs,
                           embedding_init=nnx.with_partitioning(_keras_embedding_init, ("vocab", "embed")))
    self.conv1 = Conv1D(embed_dim, conv1_filters, conv1_kernel, rngs=rngs)
    self.conv2 = Conv1D(conv1_filters, conv2_filters, conv2_kernel, rngs=rngs)
    self.hidden = nnx.Linear(conv2_filters, dense, rngs=rngs, dot_general=matmul.dot_general,
                             kernel_init=nnx.with_partitioning(_glorot, ("embed", "mlp")),
                             bias_init=nnx.with_partitioning(_zeros, ("mlp",)))
    self.out = nnx.Linear(dense, num_classes, rngs=rngs, dot_general=matmul.dot_general,
                          kernel_init=nnx.with_partitioning(_glorot, ("mlp", "classes")),
                          bias_init=nnx.with_partitioning(_zeros, ("classes",)))
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def __call__(self, inputs):  # int32 [B, L] -> float32 [B, classes]
    h = jax.nn.relu(self.conv1(self.embed(inputs)))
    windows = h.shape[1] // self.pool  # MaxPool1D(pool): stride = pool, 'valid'
    h = h[:, :windows * self.pool].reshape(h.shape[0], windows, self.pool, -1).max(axis=2)
    h = jax.nn.relu(self.conv2(h)).max(axis=1)  # GlobalMaxPool1D
    h = self.dropout(jax.nn.relu(self.hidden(h)))
    return self.out(h)


def from_config(cfg, info, *, rngs: nnx.Rngs) -> TextCNN:
  """`cfg` is `config.model`; sizes default to the seed's. `info` gives vocab_size, num_classes, seq_len."""
  return TextCNN(info["vocab_size"], info["num_classes"], info["seq_len"], **_sizes(cfg), rngs=rngs)


def _sizes(cfg) -> dict:
  return {k: cfg.get(k, v) for k, v in SEED_SIZES.items()}


def flops_per_example(cfg, info) -> float:
  return text_cnn_flops_per_example(info["seq_len"], info["num_classes"], **_sizes(cfg))


# FLOP convention (as in shared/bench/common.py): FLOPs = 2 x the multiply-accumulates of matmuls and
# convolutions; embeddings, activations, softmax, norms, pooling and the optimizer are not counted. A training
# step costs 3 x forward, except where an input gradient is never needed (a first layer fed by data).
def text_cnn_flops_per_example(seq_len=100, num_classes=20, *, training=True, **sizes):
  """Seed text CNN: Embedding -> Conv1D(k, 'valid') -> MaxPool(pool) -> Conv1D(k) -> GlobalMaxPool ->
  Dense(dense) -> Dense(classes). Training = 3 x forward: the embedding output needs its gradient, so the
  first convolution's input gradient counts."""
  s = {**SEED_SIZES, **sizes}
  c1, c2, k1, k2, dense = s["conv1_filters"], s["conv2_filters"], s["conv1_kernel"], s["conv2_kernel"], s["dense"]
  l1 = seq_len - k1 + 1
  l2 = l1 // s["pool"] - k2 + 1
  macs = l1 * k1 * s["embed_dim"] * c1 + l2 * k2 * c1 * c2 + c2 * dense + dense * num_classes
  return 3 * 2 * macs if training else 2 * macs
