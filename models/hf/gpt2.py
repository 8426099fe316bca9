"""GPT-2: pre-norm, learned positions, tied head, gelu_new, Conv1D weights stored [in, out] (no
transposition), one fused c_attn [d, 3d] for q, k and v."""
import dataclasses

from flaxforge.core.errors import UserError
from flaxforge.models import gpt
from flaxforge.models.hf.layout import Tensor, conv1d, dense, layer_norm, linear, table, vector
from flaxforge.models.transformer import Arch

MODEL_TYPES = ("gpt2",)
ANCHOR = "wte.weight"
EXPORT_PREFIX = "transformer."  # as GPT2LMHeadModel names them
ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}


@dataclasses.dataclass(frozen=True)
class Config:
  """The config.json fields read here, with transformers' GPT2Config defaults."""
  n_layer: int
  n_embd: int
  n_head: int
  n_positions: int
  vocab_size: int
  n_inner: int | None = None  # 4 * n_embd
  activation_function: str = "gelu_new"
  scale_attn_weights: bool = True
  scale_attn_by_inverse_layer_idx: bool = False
  layer_norm_epsilon: float = 1e-5
  tie_word_embeddings: bool = True


def arch(c: Config, padded_vocab: int) -> tuple[Arch, bool]:
  if c.activation_function not in ACTIVATIONS or not c.scale_attn_weights or c.scale_attn_by_inverse_layer_idx:
    raise UserError("GPT-2 with a non-gelu activation or non-standard attention scaling is not supported")
  return Arch(num_layers=c.n_layer, embed_dim=c.n_embd, num_heads=c.n_head, mlp_dim=c.n_inner or 4 * c.n_embd,
              max_len=c.n_positions, vocab_size=c.vocab_size, padded_vocab=padded_vocab, norm="layer",
              position="learned", activation=ACTIVATIONS[c.activation_function],
              norm_eps=c.layer_norm_epsilon), c.tie_word_embeddings


def matches(a: Arch, tie: bool) -> bool:
  return (a.block == "pre" and a.position == "learned" and a.norm == "layer" and not a.gated_mlp
          and a.use_bias and a.qkv_bias and a.kv_heads == a.num_heads and not a.token_types)


def config_json(a: Arch, tie: bool) -> dict:
  act = {"gelu_tanh": "gelu_new", "gelu": "gelu"}
  return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": a.vocab_size,
          "n_embd": a.embed_dim, "n_layer": a.num_layers, "n_head": a.num_heads, "n_inner": a.mlp_dim,
          "n_positions": a.max_len, "activation_function": act[a.activation], "layer_norm_epsilon": a.norm_eps,
          "tie_word_embeddings": tie}


def build(a: Arch, tie: bool, *, rngs):
  return gpt.GPT(a, tie_embeddings=tie, rngs=rngs)


def tensors(a: Arch, tie: bool) -> dict:
  d, n, h, m = a.embed_dim, a.num_heads, a.head_dim, a.mlp_dim
  t = {("transformer", "embed", "embedding"): table("wte.weight", a.vocab_size, d),
       ("transformer", "pos_embed", "embedding"): table("wpe.weight", a.max_len, d),
       **layer_norm(("transformer", "final_norm"), "ln_f", d)}
  if not tie:
    t[("lm_head", "kernel")] = linear("lm_head.weight", d, a.vocab_size)
  for i in range(a.num_layers):
    ours, theirs = ("transformer", "blocks", i), f"h.{i}."
    t.update({
        **layer_norm(ours + ("attn_norm",), theirs + "ln_1", d),
        # c_attn [d, 3 * N * H] -> [d, 3, N, H]; its bias [3 * N * H] -> [3, N, H]
        ours + ("attn", "qkv", "kernel"): Tensor((theirs + "attn.c_attn.weight",), (d, 3 * d), ((0,), (1, 2, 3))),
        ours + ("attn", "qkv", "bias"): Tensor((theirs + "attn.c_attn.bias",), (3 * d,), ((0, 1, 2),)),
        ours + ("attn", "out", "kernel"): Tensor((theirs + "attn.c_proj.weight",), (n * h, d), ((0, 1), (2,))),
        ours + ("attn", "out", "bias"): vector(theirs + "attn.c_proj.bias", d),
        **layer_norm(ours + ("mlp_norm",), theirs + "ln_2", d),
        **dense(ours + ("mlp", "up"), theirs + "mlp.c_fc", d, m, kernel=conv1d),
        **dense(ours + ("mlp", "down"), theirs + "mlp.c_proj", m, d, kernel=conv1d),
    })
  return t
