"""Vision Transformer (Dosovitskiy et al. 2021, arXiv:2010.11929), as transformers' `ViTModel` computes it, and
a classifier on it (`ViTForImageClassification` with model.pool='cls'). Built from a Hugging Face directory
(model.pretrained): its config.json gives the architecture and models/hf loads the weights.

An image [H, W, C] is cut into (H/p) x (W/p) square patches of p pixels, row by row, each embedded by one
linear map (a p x p convolution of stride p); a learned class token goes first, learned positions are added
to all N + 1, and pre-norm blocks and a final LayerNorm follow (models/transformer.py).
"""
import jax.numpy as jnp
from flax import nnx

from flaxforge.core.errors import UserError
from flaxforge.models import fields
from flaxforge.models.dropout import Dropout
from flaxforge.models.initializers import ACTIVATIONS, normal, zeros
from flaxforge.models.transformer import Arch, Transformer, arch_from_config, transformer_classifier_flops_per_example


def patches(arch: Arch) -> int:
  """N: the patches of an image, (height / p) * (width / p)."""
  height, width = arch.image_size
  return (height // arch.patch_size) * (width // arch.patch_size)


class ViT(nnx.Module):

  def __init__(self, arch: Arch, *, rngs):
    p, d = arch.patch_size, arch.embed_dim
    self.arch = arch
    self.patch_embed = nnx.Conv(arch.channels, d, (p, p), strides=(p, p), padding="VALID", dtype=arch.dtype,
                                param_dtype=arch.param_dtype, kernel_init=normal(0.02, (None, None, None, "embed")),
                                bias_init=zeros(("embed",)), rngs=rngs)
    self.cls_token = nnx.Param(normal(0.02, ("embed",))(rngs.params(), (d,), arch.param_dtype))
    self.transformer = Transformer(arch, rngs=rngs)

  def __call__(self, images, output_positions=None):
    """images float [B, H, W, C] (normalised as the image processor says) -> float32 hidden states
    [B, N + 1, d] (position 0: the class token); [B, P, d] at output_positions (int [B, P]) only, if given."""
    if images.shape[1:] != (*self.arch.image_size, self.arch.channels):
      raise UserError(f"images of shape {tuple(images.shape[1:])} do not fit this ViT, which takes "
                      f"{(*self.arch.image_size, self.arch.channels)}; set data.image_size to its image_size")
    x = self.patch_embed(images.astype(self.arch.dtype))
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
    x = jnp.concatenate([cls, x], axis=1)
    h, _ = self.transformer(None, jnp.arange(x.shape[1]), embedded=x, output_positions=output_positions)
    return h.astype(jnp.float32)


class ViTClassifier(ViT):
  """Pooling (model.pool): 'cls' the class token's final state (ViTForImageClassification), 'mean' the mean of
  the patches' states, 'pooler' the class token through dense + tanh (ViTModel's pooler, loaded when the
  checkpoint holds one); then a linear head."""

  def __init__(self, arch: Arch, num_classes: int, *, pool: str, rngs):
    super().__init__(arch, rngs=rngs)
    self.pool = pool
    d = arch.embed_dim
    self.pooler = (nnx.Linear(d, d, kernel_init=normal(0.02, ("embed", "mlp")), bias_init=zeros(("mlp",)), rngs=rngs)
                   if pool == "pooler" else None)
    self.dropout = Dropout(arch.dropout, rngs=rngs)
    self.head = nnx.Linear(d, num_classes, kernel_init=normal(0.02, ("embed", "classes")),
                           bias_init=zeros(("classes",)), rngs=rngs)

  def __call__(self, images):
    """images float [B, H, W, C] -> float32 logits [B, classes]."""
    if self.pool == "mean":
      pooled = super().__call__(images)[:, 1:].mean(1)
    else:  # the last block computes the class token alone
      pooled = super().__call__(images, output_positions=jnp.zeros((images.shape[0], 1), jnp.int32))[:, 0]
    if self.pooler is not None:
      pooled = ACTIVATIONS[self.arch.pooler_activation](self.pooler(pooled))
    return self.head(self.dropout(pooled))


def _arch(cfg, info, pretrained) -> Arch:
  if pretrained is None:
    raise UserError("model vit needs a pretrained Hugging Face ViT folder: pass --config.model.pretrained=DIR")
  return arch_from_config(cfg, info, pretrained)


def flops_per_example(cfg, info, pretrained=None) -> float:
  """The blocks over N + 1 positions and the head (transformer_classifier_flops_per_example), plus the patch
  embedding: 2 * N * p^2 * C * d forward and as much again for its weight gradient (it needs no input
  gradient), and 'pooler' pooling's d x d layer."""
  a, pool = _arch(cfg, info, pretrained), fields.Encoder.read(cfg).pool
  body = transformer_classifier_flops_per_example(a.num_layers, a.embed_dim, a.mlp_dim, patches(a) + 1,
                                                  int(info["num_classes"]), pooled=pool != "mean",
                                                  **a.flops_shape())
  pooler = 3 * 2 * a.embed_dim ** 2 if pool == "pooler" else 0
  return body + pooler + 2 * (2 * patches(a) * a.patch_size ** 2 * a.channels * a.embed_dim)


def from_config(cfg, info, *, rngs, pretrained=None) -> ViTClassifier:
  """The architecture of `pretrained` (a models.hf.Pretrained of model_type vit; its weights are loaded
  separately, by models.hf.load_params) as a classifier of info["num_classes"] classes."""
  return ViTClassifier(_arch(cfg, info, pretrained), int(info["num_classes"]), pool=fields.Encoder.read(cfg).pool,
                       rngs=rngs)
