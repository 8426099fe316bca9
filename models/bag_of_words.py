"""A bag-of-words classifier: the set of words in a text, embedded and pooled, then an MLP.

Each distinct word id contributes once (a multi-hot vector times a learned table, computed as a
gather), scaled by 1/sqrt(distinct words). It reads the same token-id sequences as the text CNN but ignores
order, which on topic classification beats the CNN by a wide margin at a fraction of its cost.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from flaxforge.models import fields
from flaxforge.models.initializers import normal, zeros


class BagOfWords(nnx.Module):

  def __init__(self, vocab_size: int, num_classes: int, options: fields.BagOfWords = fields.BagOfWords(), *,
               rngs: nnx.Rngs):
    embed_dim, hidden = options.embed_dim, options.hidden
    self.embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs, embedding_init=normal(0.02, ("vocab", "embed")))
    # zeros: the key is unused (and rngs keeps its stream)
    self.bias = nnx.Param(zeros(("embed",))(jax.random.key(0), (embed_dim,), jnp.float32))
    self.hidden = nnx.Linear(embed_dim, hidden, rngs=rngs, kernel_init=nnx.with_partitioning(
        nnx.initializers.he_normal(), ("embed", "mlp"))) if hidden else None
    self.out = nnx.Linear(hidden or embed_dim, num_classes, rngs=rngs, kernel_init=nnx.with_partitioning(
        nnx.initializers.glorot_uniform(), ("mlp", "classes")), bias_init=zeros(("classes",)))
    self.dropout = nnx.Dropout(options.dropout, rngs=rngs)

  def __call__(self, inputs):  # int32 [B, L] (0 = padding) -> float32 [B, classes]
    ids = jnp.sort(inputs, axis=-1)
    first = jnp.concatenate([ids[:, :1] > 0, (ids[:, 1:] != ids[:, :-1]) & (ids[:, 1:] > 0)], axis=-1)
    weights = first.astype(jnp.float32)
    count = jnp.maximum(weights.sum(-1, keepdims=True), 1.0)
    pooled = jnp.einsum("bl,bld->bd", weights, self.embed(ids)) / jnp.sqrt(count)
    h = self.dropout(jax.nn.relu(pooled + self.bias[...]))
    if self.hidden is not None:
      h = self.dropout(jax.nn.relu(self.hidden(h)))
    return self.out(h)


def from_config(cfg, info, *, rngs: nnx.Rngs) -> BagOfWords:
  return BagOfWords(info["vocab_size"], info["num_classes"], fields.BagOfWords.read(cfg), rngs=rngs)
