"""Bidirectional encoder (BERT's `BertModel` when built from a Hugging Face directory) and a classifier on
it. The padding id (0 unless the pretrained tokenizer's is another, info["pad_id"]) is hidden from attention
as a key.

Pooling (cfg.pool): 'cls' (default) takes the hidden state at position 0, which must hold a CLS token the
data pipeline prepends; 'mean' averages the hidden states of the non-padding tokens; 'pooler' passes position
0 through a dense layer and `Arch.pooler_activation`, as the family's `*ForSequenceClassification` does (BERT's
pretrained pooler when the checkpoint holds one; RoBERTa's classifier.dense, DistilBERT's pre_classifier).
"""
import jax.numpy as jnp
from flax import nnx

from flaxforge.models import fields
from flaxforge.models.dropout import Dropout
from flaxforge.models.initializers import ACTIVATIONS, normal, zeros
from flaxforge.models.transformer import Arch, Transformer, arch_from_config, transformer_classifier_flops_per_example


class Encoder(nnx.Module):

  def __init__(self, arch: Arch, *, pad_id: int = 0, rngs):
    self.transformer = Transformer(arch, rngs=rngs)
    self.pad_id = pad_id

  def __call__(self, tokens, token_types=None, output_positions=None):
    """tokens int [B, T] (pad_id = padding), token_types int [B, T] or None -> float32 hidden states [B, T, d];
    [B, P, d] at output_positions (int [B, P]) only, if given (see Transformer)."""
    h, _ = self.transformer(tokens, jnp.arange(tokens.shape[1]), token_types=token_types,
                            mask=(tokens != self.pad_id)[:, None, None, :], output_positions=output_positions)
    return h.astype(jnp.float32)


class BertClassifier(Encoder):

  def __init__(self, arch: Arch, num_classes: int, *, pool: str, pad_id: int = 0, rngs):
    """pool: 'cls', 'mean' or 'pooler' (fields.Encoder)."""
    super().__init__(arch, pad_id=pad_id, rngs=rngs)
    self.pool = pool
    d = arch.embed_dim
    self.pooler = (nnx.Linear(d, d, kernel_init=normal(0.02, ("embed", "mlp")), bias_init=zeros(("mlp",)), rngs=rngs)
                   if pool == "pooler" else None)
    self.dropout = Dropout(arch.dropout, rngs=rngs)
    # The head is tiny, so it runs in float32 whatever the compute dtype.
    self.head = nnx.Linear(arch.embed_dim, num_classes, kernel_init=normal(0.02, ("embed", "classes")),
                           bias_init=zeros(("classes",)), rngs=rngs)

  def __call__(self, tokens):
    """tokens int [B, T] -> float32 logits [B, classes]."""
    if self.pool == "mean":
      h = super().__call__(tokens)
      weights = (tokens != self.pad_id)[..., None].astype(jnp.float32)
      pooled = (h * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)
    else:  # the last block computes position 0 alone
      pooled = super().__call__(tokens, output_positions=jnp.zeros((tokens.shape[0], 1), jnp.int32))[:, 0]
    if self.pooler is not None:
      pooled = ACTIVATIONS[self.transformer.arch.pooler_activation](self.pooler(pooled))
    return self.head(self.dropout(pooled))


def flops_per_example(cfg, info, pretrained=None) -> float:
  """The body and head (transformer_classifier_flops_per_example), plus 'pooler' pooling's d x d layer."""
  a, pool = arch_from_config(cfg, info, pretrained), fields.Encoder.read(cfg).pool
  pooler = 3 * 2 * a.embed_dim ** 2 if pool == "pooler" else 0
  return pooler + transformer_classifier_flops_per_example(a.num_layers, a.embed_dim, a.mlp_dim, int(info["seq_len"]),
                                                           int(info["num_classes"]), pooled=pool != "mean",
                                                           **a.flops_shape())


def from_config(cfg, info, *, rngs, pretrained=None) -> BertClassifier:
  """Given `pretrained` (a models.hf.Pretrained), that Hugging Face directory's architecture (its weights are
  loaded separately, by models.hf.load_params)."""
  return BertClassifier(arch_from_config(cfg, info, pretrained), int(info["num_classes"]),
                        pool=fields.Encoder.read(cfg).pool, pad_id=int(info.get("pad_id", 0)), rngs=rngs)
