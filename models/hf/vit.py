"""ViT image encoders (`ViTModel`; checkpoints of `ViTForImageClassification` share its names under "vit."):
a p x p patch convolution (PyTorch's [d, C, p, p] weight as our [p, p, C, d] kernel), a [1, 1, d] class token
and a [1, N + 1, d] position table, pre-norm blocks (layernorm_before/after) and a final LayerNorm. Images must
have config.json's image_size (no interpolation of the position table)."""
import dataclasses

from flaxforge.core.errors import UserError
from flaxforge.models import vit
from flaxforge.models.hf.layout import Head, Tensor, dense, heads_in, heads_out, layer_norm, linear, vector
from flaxforge.models.transformer import Arch

MODEL_TYPES = ("vit",)
MODEL = "vit"
ANCHOR = "embeddings.patch_embeddings.projection.weight"
EXPORT_PREFIX = ""  # ViTModel's own names; ViTFor* models wrap them in "vit."
CLASSIFIER_POOL = "cls"  # ViTForImageClassification: classifier(final state of the class token)
KEPT_FROM_BASE = ("pooler.dense.weight", "pooler.dense.bias")  # ViTModel's pooler, unused by its classifier
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


@dataclasses.dataclass(frozen=True)
class Config:
  """The config.json fields read here, with transformers' ViTConfig defaults."""
  hidden_size: int
  num_hidden_layers: int
  num_attention_heads: int
  intermediate_size: int
  hidden_act: str = "gelu"
  layer_norm_eps: float = 1e-12
  image_size: int | list = 224
  patch_size: int | list = 16
  num_channels: int = 3
  qkv_bias: bool = True
  pooler_act: str = "tanh"


def _pair(value) -> tuple[int, int]:
  return (int(value), int(value)) if isinstance(value, (int, float)) else tuple(int(v) for v in value)


def arch(c: Config, padded_vocab: int) -> tuple[Arch, bool]:
  del padded_vocab  # patches, not token ids
  size, patch = _pair(c.image_size), _pair(c.patch_size)
  if c.hidden_act not in ACTIVATIONS:
    raise UserError(f"hidden_act={c.hidden_act!r} is not supported; ViT loads with "
                    f"{', '.join(ACTIVATIONS)}")
  if patch[0] != patch[1] or size[0] % patch[0] or size[1] % patch[0]:
    raise UserError(f"patch_size={c.patch_size} is not supported with image_size={c.image_size}; ViT "
                    "loads square patches that tile the image")
  if c.pooler_act != "tanh":
    raise UserError(f"pooler_act={c.pooler_act!r} is not supported; ViT loads with tanh")
  a = Arch(num_layers=c.num_hidden_layers, embed_dim=c.hidden_size, num_heads=c.num_attention_heads,
           mlp_dim=c.intermediate_size, max_len=0, vocab_size=0, padded_vocab=0, norm="layer", position="learned",
           block="pre", activation=ACTIVATIONS[c.hidden_act], norm_eps=c.layer_norm_eps, qkv_bias=c.qkv_bias,
           model_type="vit", patch_size=patch[0], image_size=size, channels=c.num_channels)
  return dataclasses.replace(a, max_len=vit.patches(a) + 1), False


def matches(a: Arch, tie: bool) -> bool:
  return a.model_type in MODEL_TYPES


def config_json(a: Arch, tie: bool) -> dict:
  act = {"gelu": "gelu", "gelu_tanh": "gelu_new"}
  return {"architectures": ["ViTModel"], "model_type": "vit", "hidden_size": a.embed_dim,
          "num_hidden_layers": a.num_layers, "num_attention_heads": a.num_heads, "intermediate_size": a.mlp_dim,
          "hidden_act": act[a.activation], "layer_norm_eps": a.norm_eps, "image_size": list(a.image_size),
          "patch_size": a.patch_size, "num_channels": a.channels, "qkv_bias": a.qkv_bias,
          "encoder_stride": a.patch_size}


def build(a: Arch, tie: bool, *, rngs):
  return vit.ViT(a, rngs=rngs)


def tensors(a: Arch, tie: bool) -> dict:
  d, n, h, m, p, c = a.embed_dim, a.num_heads, a.head_dim, a.mlp_dim, a.patch_size, a.channels
  t = {("patch_embed", "kernel"): Tensor(("embeddings.patch_embeddings.projection.weight",), (d, c, p, p),
                                         ((3,), (2,), (0,), (1,))),
       ("patch_embed", "bias"): vector("embeddings.patch_embeddings.projection.bias", d),
       ("cls_token",): Tensor(("embeddings.cls_token",), (1, 1, d), ((), (), (0,))),
       ("transformer", "pos_embed", "embedding"): Tensor(("embeddings.position_embeddings",), (1, a.max_len, d),
                                                         ((), (0,), (1,))),
       **layer_norm(("transformer", "final_norm"), "layernorm", d)}
  for i in range(a.num_layers):
    ours, theirs = ("transformer", "blocks", i), f"encoder.layer.{i}."
    qkv = [f"{theirs}attention.attention.{x}" for x in ("query", "key", "value")]
    t.update({
        **layer_norm(ours + ("attn_norm",), theirs + "layernorm_before", d),
        ours + ("attn", "qkv", "kernel"): heads_in([x + ".weight" for x in qkv], n, h, d),
        ours + ("attn", "out", "kernel"): heads_out(theirs + "attention.output.dense.weight", n, h, d),
        ours + ("attn", "out", "bias"): vector(theirs + "attention.output.dense.bias", d),
        **layer_norm(ours + ("mlp_norm",), theirs + "layernorm_after", d),
        **dense(ours + ("mlp", "up"), theirs + "intermediate.dense", d, m),
        **dense(ours + ("mlp", "down"), theirs + "output.dense", m, d),
    })
    if a.qkv_bias:
      t[ours + ("attn", "qkv", "bias")] = heads_in([x + ".bias" for x in qkv], n, h, d, bias=True)
  return t


def pooler(a: Arch) -> dict:
  """ViTModel's pooler, tanh(dense(class token)), as a model.pool='pooler' classifier's `pooler`."""
  return dense(("pooler",), "pooler.dense", a.embed_dim, a.embed_dim)


def classifier(a: Arch, num_classes: int) -> Head:
  """ViTForImageClassification: classifier(final state of the class token)."""
  return Head("ViTForImageClassification", "vit.", {
      ("head", "kernel"): linear("classifier.weight", a.embed_dim, num_classes),
      ("head", "bias"): vector("classifier.bias", num_classes)})
