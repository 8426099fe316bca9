"""Bidirectional encoder classifier. Token id 0 is padding and is hidden from attention as a key.

Pooling (cfg.pool): 'cls' (default) takes the hidden state at position 0, which must hold a CLS token the
data pipeline prepends; 'mean' averages the hidden states of the non-padding tokens.
"""
import jax.numpy as jnp
from flax import nnx

from flaxforge.core.errors import UserError
from flaxforge.models.transformer import (Arch, Transformer, arch_from_config, normal,
                                          transformer_classifier_flops_per_example, zeros)


class BertClassifier(nnx.Module):

  def __init__(self, arch: Arch, num_classes: int, *, pool="cls", rngs):
    if pool not in ("cls", "mean"):
      raise UserError(f"model.pool must be 'cls' or 'mean', not {pool!r}")
    self.pool = pool
    self.transformer = Transformer(arch, rngs=rngs)
    self.dropout = nnx.Dropout(arch.dropout, rngs=rngs)
    # The head is tiny, so it runs in float32 whatever the compute dtype.
    self.head = nnx.Linear(arch.embed_dim, num_classes, kernel_init=normal(0.02, ("embed", "classes")),
                           bias_init=zeros(("classes",)), rngs=rngs)

  def __call__(self, tokens):
    """tokens int [B, T] -> float32 logits [B, classes]."""
    real = tokens != 0
    h, _ = self.transformer(tokens, jnp.arange(tokens.shape[1]), mask=real[:, None, None, :])
    h = h.astype(jnp.float32)
    if self.pool == "cls":
      pooled = h[:, 0]
    else:
      weights = real[..., None].astype(jnp.float32)
      pooled = (h * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)
    return self.head(self.dropout(pooled))


def flops_per_example(cfg, info) -> float:
  a = arch_from_config(cfg, info)
  return transformer_classifier_flops_per_example(a.num_layers, a.embed_dim, a.mlp_dim,
                                                        int(info["seq_len"]), int(info["num_classes"]))


def from_config(cfg, info, *, rngs) -> BertClassifier:
  return BertClassifier(arch_from_config(cfg, info), int(info["num_classes"]), pool=cfg.get("pool", "cls"),
                        rngs=rngs)
