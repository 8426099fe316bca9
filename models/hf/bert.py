"""BERT-family encoders (`BertModel`, e.g. MiniLM): post-norm blocks, learned positions, token types."""
import dataclasses

from flaxforge.core.errors import UserError
from flaxforge.models import bert
from flaxforge.models.hf.layout import Head, dense, heads_in, heads_out, layer_norm, table, vector
from flaxforge.models.transformer import Arch

MODEL_TYPES = ("bert",)
MODEL = "bert"  # models/registry.py's name of the model built on it
ANCHOR = "embeddings.word_embeddings.weight"
EXPORT_PREFIX = ""  # BertModel's own names; BertFor* models wrap them in "bert."
CLASSIFIER_POOL = "pooler"  # the model.pool that BertForSequenceClassification computes
# BertModel's pooler (tanh(dense([CLS]))) has no part in flaxforge's classifiers, which pool and add their own
# head: export copies it from the base checkpoint unchanged, so `pooler_output` is the base model's.
KEPT_FROM_BASE = ("pooler.dense.weight", "pooler.dense.bias")
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}


@dataclasses.dataclass(frozen=True)
class Config:
  """The config.json fields read here, with transformers' BertConfig defaults."""
  num_hidden_layers: int
  hidden_size: int
  num_attention_heads: int
  intermediate_size: int
  max_position_embeddings: int
  vocab_size: int
  hidden_act: str = "gelu"
  layer_norm_eps: float = 1e-12
  type_vocab_size: int = 2
  position_embedding_type: str = "absolute"


def arch(c: Config, padded_vocab: int) -> tuple[Arch, bool]:
  if c.position_embedding_type != "absolute":
    raise UserError(f"position_embedding_type={c.position_embedding_type!r} is not supported; "
                    "BERT, RoBERTa and XLM-RoBERTa load with 'absolute'")
  if c.hidden_act not in ACTIVATIONS:
    raise UserError(f"hidden_act={c.hidden_act!r} is not supported; BERT, RoBERTa and XLM-RoBERTa load "
                    f"with {', '.join(ACTIVATIONS)}")
  return Arch(num_layers=c.num_hidden_layers, embed_dim=c.hidden_size, num_heads=c.num_attention_heads,
              mlp_dim=c.intermediate_size, max_len=c.max_position_embeddings, vocab_size=c.vocab_size,
              padded_vocab=padded_vocab, norm="layer", position="learned", block="post",
              activation=ACTIVATIONS[c.hidden_act], norm_eps=c.layer_norm_eps, token_types=c.type_vocab_size), False


def matches(a: Arch, tie: bool) -> bool:
  return a.block == "post" and a.position == "learned" and a.norm == "layer" and not a.gated_mlp


def config_json(a: Arch, tie: bool) -> dict:
  act = {ours: theirs for theirs, ours in ACTIVATIONS.items()}
  return {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": a.vocab_size,
          "hidden_size": a.embed_dim, "num_hidden_layers": a.num_layers, "num_attention_heads": a.num_heads,
          "intermediate_size": a.mlp_dim, "hidden_act": act[a.activation], "max_position_embeddings": a.max_len,
          "type_vocab_size": a.token_types, "layer_norm_eps": a.norm_eps, "pad_token_id": 0,
          "position_embedding_type": "absolute"}


def build(a: Arch, tie: bool, *, rngs):
  return bert.Encoder(a, rngs=rngs)


def tensors(a: Arch, tie: bool) -> dict:
  d, n, h, m = a.embed_dim, a.num_heads, a.head_dim, a.mlp_dim
  t = {("transformer", "embed", "embedding"): table("embeddings.word_embeddings.weight", a.vocab_size, d),
       ("transformer", "pos_embed", "embedding"): table("embeddings.position_embeddings.weight",
                                                        a.max_len + a.position_offset, d),
       ("transformer", "type_embed", "embedding"): table("embeddings.token_type_embeddings.weight",
                                                         a.token_types, d),
       **layer_norm(("transformer", "embed_norm"), "embeddings.LayerNorm", d)}
  for i in range(a.num_layers):
    ours, theirs = ("transformer", "blocks", i), f"encoder.layer.{i}."
    qkv = [f"{theirs}attention.self.{x}" for x in ("query", "key", "value")]
    t.update({
        ours + ("attn", "qkv", "kernel"): heads_in([x + ".weight" for x in qkv], n, h, d),
        ours + ("attn", "qkv", "bias"): heads_in([x + ".bias" for x in qkv], n, h, d, bias=True),
        ours + ("attn", "out", "kernel"): heads_out(theirs + "attention.output.dense.weight", n, h, d),
        ours + ("attn", "out", "bias"): vector(theirs + "attention.output.dense.bias", d),
        **layer_norm(ours + ("attn_norm",), theirs + "attention.output.LayerNorm", d),
        **dense(ours + ("mlp", "up"), theirs + "intermediate.dense", d, m),
        **dense(ours + ("mlp", "down"), theirs + "output.dense", m, d),
        **layer_norm(ours + ("mlp_norm",), theirs + "output.LayerNorm", d),
    })
  return t


# --- classifier export ---
def pooler(a: Arch) -> dict:
  """BertModel's pooler, tanh(dense([CLS])), as a model.pool='pooler' classifier's `pooler`: loaded from the
  checkpoint when it holds one."""
  return dense(("pooler",), "pooler.dense", a.embed_dim, a.embed_dim)


def classifier(a: Arch, num_classes: int) -> Head:
  """BertForSequenceClassification: classifier(dropout(pooler([CLS])))."""
  return Head("BertForSequenceClassification", "bert.", {
      **dense(("pooler",), "bert.pooler.dense", a.embed_dim, a.embed_dim),
      **dense(("head",), "classifier", a.embed_dim, num_classes)})
