"""The project's own Flax NNX model: a topic classifier over token ids (the mean of the words' embeddings,
one hidden layer). flaxforge builds it through `from_config` and trains it like a built-in model."""
import jax
import jax.numpy as jnp
from flax import nnx


class TopicClassifier(nnx.Module):

  def __init__(self, vocab_size: int, num_classes: int, *, width: int, rngs: nnx.Rngs):
    self.embed = nnx.Embed(vocab_size, width, rngs=rngs)
    self.hidden = nnx.Linear(width, width, rngs=rngs)
    self.out = nnx.Linear(width, num_classes, rngs=rngs)

  def __call__(self, ids):  # int32 [batch, seq_len], 0 = padding -> float32 logits [batch, classes]
    mask = (ids > 0).astype(jnp.float32)[..., None]
    mean = (self.embed(ids) * mask).sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1.0)
    return self.out(jax.nn.relu(self.hidden(mean)))


def from_config(cfg, info, *, rngs: nnx.Rngs) -> TopicClassifier:
  """cfg: the config's `model` section; info: the dataset's metadata (vocab_size, num_classes, ...)."""
  return TopicClassifier(info["vocab_size"], info["num_classes"], width=cfg.embed_dim, rngs=rngs)
