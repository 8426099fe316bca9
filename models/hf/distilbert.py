"""DistilBERT encoders (`DistilBertModel`): BERT's post-norm blocks without token types or a pooler, with
their own tensor names (q_lin, sa_layer_norm, ffn.lin1, ...) and LayerNorm epsilon 1e-12."""
import dataclasses

from flaxforge.core.errors import UserError
from flaxforge.models import bert as bert_model
from flaxforge.models.hf.layout import Head, dense, heads_in, heads_out, layer_norm, table, vector
from flaxforge.models.transformer import Arch

MODEL_TYPES = ("distilbert",)
MODEL = "bert"
ANCHOR = "embeddings.word_embeddings.weight"
EXPORT_PREFIX = ""  # DistilBertModel's own names; DistilBertFor* models wrap them in "distilbert."
CLASSIFIER_POOL = "pooler"  # classifier(relu(pre_classifier([CLS])))
ACTIVATIONS = {"gelu": "gelu"}


@dataclasses.dataclass(frozen=True)
class Config:
  """The config.json fields read here, with transformers' DistilBertConfig defaults."""
  dim: int
  n_layers: int
  n_heads: int
  hidden_dim: int
  vocab_size: int
  max_position_embeddings: int = 512
  activation: str = "gelu"
  sinusoidal_pos_embds: bool = False
  pad_token_id: int = 0


def arch(c: Config, padded_vocab: int) -> tuple[Arch, bool]:
  if c.activation not in ACTIVATIONS:
    raise UserError(f"activation={c.activation!r} is not supported; DistilBERT loads with gelu "
                    "(families: bert, roberta, xlm-roberta, distilbert)")
  if c.sinusoidal_pos_embds:
    raise UserError(f"sinusoidal_pos_embds={c.sinusoidal_pos_embds!r} is not supported; DistilBERT "
                    "loads with learned positions (false)")
  return Arch(num_layers=c.n_layers, embed_dim=c.dim, num_heads=c.n_heads, mlp_dim=c.hidden_dim,
              max_len=c.max_position_embeddings, vocab_size=c.vocab_size, padded_vocab=padded_vocab, norm="layer",
              position="learned", block="post", activation=ACTIVATIONS[c.activation], norm_eps=1e-12,
              model_type="distilbert", pooler_activation="relu"), False


def matches(a: Arch, tie: bool) -> bool:
  return a.model_type in MODEL_TYPES


def config_json(a: Arch, tie: bool) -> dict:
  return {"architectures": ["DistilBertModel"], "model_type": "distilbert", "vocab_size": a.vocab_size,
          "dim": a.embed_dim, "n_layers": a.num_layers, "n_heads": a.num_heads, "hidden_dim": a.mlp_dim,
          "activation": a.activation, "max_position_embeddings": a.max_len, "sinusoidal_pos_embds": False, "pad_token_id": 0}


def build(a: Arch, tie: bool, *, rngs):
  return bert_model.Encoder(a, rngs=rngs)


def tensors(a: Arch, tie: bool) -> dict:
  d, n, h, m = a.embed_dim, a.num_heads, a.head_dim, a.mlp_dim
  t = {("transformer", "embed", "embedding"): table("embeddings.word_embeddings.weight", a.vocab_size, d),
       ("transformer", "pos_embed", "embedding"): table("embeddings.position_embeddings.weight", a.max_len, d),
       **layer_norm(("transformer", "embed_norm"), "embeddings.LayerNorm", d)}
  for i in range(a.num_layers):
    ours, theirs = ("transformer", "blocks", i), f"transformer.layer.{i}."
    qkv = [f"{theirs}attention.{x}_lin" for x in "qkv"]
    t.update({
        ours + ("attn", "qkv", "kernel"): heads_in([x + ".weight" for x in qkv], n, h, d),
        ours + ("attn", "qkv", "bias"): heads_in([x + ".bias" for x in qkv], n, h, d, bias=True),
        ours + ("attn", "out", "kernel"): heads_out(theirs + "attention.out_lin.weight", n, h, d),
        ours + ("attn", "out", "bias"): vector(theirs + "attention.out_lin.bias", d),
        **layer_norm(ours + ("attn_norm",), theirs + "sa_layer_norm", d),
        **dense(ours + ("mlp", "up"), theirs + "ffn.lin1", d, m),
        **dense(ours + ("mlp", "down"), theirs + "ffn.lin2", m, d),
        **layer_norm(ours + ("mlp_norm",), theirs + "output_layer_norm", d),
    })
  return t


def classifier(a: Arch, num_classes: int) -> Head:
  """DistilBertForSequenceClassification: classifier(dropout(relu(pre_classifier([CLS]))))."""
  return Head("DistilBertForSequenceClassification", "distilbert.", {
      **dense(("pooler",), "pre_classifier", a.embed_dim, a.embed_dim),
      **dense(("head",), "classifier", a.embed_dim, num_classes)})
