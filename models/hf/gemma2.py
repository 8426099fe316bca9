"""Gemma 2 decoders (transformers' Gemma2ForCausalLM): Llama's layout and tensor names (llama.tensors) with
Gemma's RMSNorm, x * (1 + weight), four norms per block (before and after attention and the MLP), embeddings
times sqrt(hidden_size), queries scaled by query_pre_attn_scalar^-1/2, tanh soft-capping of the attention
logits and of the LM's logits, a gelu-tanh MLP, and sliding-window layers alternating with global ones
(layer_types; transformers v4: the even layers). The head is tied unless tie_word_embeddings is false."""
import dataclasses

from flaxforge.core.errors import UserError
from flaxforge.models.hf import llama
from flaxforge.models.transformer import Arch

MODEL_TYPES = ("gemma2",)
ANCHOR = llama.ANCHOR
EXPORT_PREFIX = llama.EXPORT_PREFIX
ACTIVATIONS = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu": "gelu"}
build, tensors = llama.build, llama.tensors


@dataclasses.dataclass(frozen=True)
class Config:
  """The config.json fields read here, with transformers' Gemma2Config defaults. A null soft-cap or
  sliding_window is none."""
  model_type: str
  hidden_size: int
  num_attention_heads: int
  num_hidden_layers: int
  intermediate_size: int
  vocab_size: int
  num_key_value_heads: int = 4
  head_dim: int = 256
  hidden_activation: str = "gelu_pytorch_tanh"
  max_position_embeddings: int = 8192
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0  # transformers v4; v5 moves it into rope_parameters
  rope_scaling: dict | None = None  # transformers v4
  rope_parameters: dict | None = None  # transformers v5
  attention_bias: bool = False
  query_pre_attn_scalar: float = 256
  sliding_window: int | None = 4096
  layer_types: tuple | None = None  # transformers v5
  final_logit_softcapping: float | None = 30.0
  attn_logit_softcapping: float | None = 50.0
  use_bidirectional_attention: bool | None = None
  tie_word_embeddings: bool = True


def layer_windows(c, pattern: int) -> tuple:
  """Per layer, c.sliding_window on the layers layer_types calls sliding (without layer_types: all but every
  `pattern`-th, transformers' default), else 0; () when no layer has a window."""
  types = c.layer_types or [llama.SLIDING if (i + 1) % pattern else llama.FULL for i in range(c.num_hidden_layers)]
  windows = tuple(c.sliding_window if t == llama.SLIDING and c.sliding_window else 0 for t in types)
  return windows if any(windows) else ()


def gemma_arch(c, padded_vocab: int, **extra) -> tuple[Arch, bool]:
  """What Gemma 2 and 3 share: the Arch with `extra` fields (those that differ) over it."""
  if c.hidden_activation not in ACTIVATIONS:
    raise UserError(f"hidden_activation {c.hidden_activation!r} is not supported for {c.model_type} (flaxforge "
                    f"computes {', '.join(ACTIVATIONS)})")
  if c.attention_bias:
    raise UserError(f"attention_bias=true is not supported for {c.model_type} (flaxforge cannot bias o_proj "
                    "without the MLP)")
  if c.use_bidirectional_attention:
    raise UserError(f"use_bidirectional_attention=true is not supported for {c.model_type} (flaxforge runs "
                    "Gemma as a causal decoder)")
  d, n = c.hidden_size, c.num_attention_heads
  fields = dict(num_layers=c.num_hidden_layers, embed_dim=d, num_heads=n, mlp_dim=c.intermediate_size,
                max_len=c.max_position_embeddings, vocab_size=c.vocab_size, padded_vocab=padded_vocab, norm="rms",
                position="rope", use_bias=False, qkv_bias=False, num_kv_heads=c.num_key_value_heads,
                activation=ACTIVATIONS[c.hidden_activation], gated_mlp=True, norm_eps=c.rms_norm_eps,
                head_size=0 if c.head_dim == d // n else c.head_dim, norm_offset=1.0, sandwich_norm=True,
                embed_scale=True, attn_scale=float(c.query_pre_attn_scalar) ** -0.5,
                attn_softcap=float(c.attn_logit_softcapping or 0.0),
                logit_softcap=float(c.final_logit_softcapping or 0.0))
  return Arch(**{**fields, **extra}), c.tie_word_embeddings


def arch(c: Config, padded_vocab: int) -> tuple[Arch, bool]:
  theta, scaling = llama.rope(c.rope_parameters or c.rope_scaling, c.rope_theta)
  return gemma_arch(c, padded_vocab, rope_base=theta, rope_scaling=scaling, windows=layer_windows(c, 2))


def is_gemma(a: Arch) -> bool:
  """Whether `a` is a Gemma 2 or 3 decoder (gemma_arch's fixed fields)."""
  return (a.block == "pre" and a.position == "rope" and a.norm == "rms" and a.norm_offset == 1.0
          and a.sandwich_norm and a.embed_scale and a.gated_mlp and a.activation in ACTIVATIONS.values()
          and not a.use_bias and not a.qkv_bias and not a.token_types)


def matches(a: Arch, tie: bool) -> bool:
  return is_gemma(a) and not a.qk_norm and not a.local_rope_base


def gemma_config_json(a: Arch, tie: bool) -> dict:
  """config.json's fields that Gemma 2 and 3 share."""
  act = {"gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu"}
  window = max(a.windows, default=0)
  return {"vocab_size": a.vocab_size, "hidden_size": a.embed_dim, "num_hidden_layers": a.num_layers,
          "num_attention_heads": a.num_heads, "num_key_value_heads": a.kv_heads, "head_dim": a.head_dim,
          "intermediate_size": a.mlp_dim, "hidden_activation": act[a.activation],
          "max_position_embeddings": a.max_len, "rms_norm_eps": a.norm_eps,
          "query_pre_attn_scalar": round(a.attn_scale ** -2), "sliding_window": window or None,
          "layer_types": [llama.SLIDING if a.window(i) else llama.FULL for i in range(a.num_layers)],
          "final_logit_softcapping": a.logit_softcap or None, "attn_logit_softcapping": a.attn_softcap or None,
          "attention_bias": False, "tie_word_embeddings": tie}


def config_json(a: Arch, tie: bool) -> dict:
  return {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", **gemma_config_json(a, tie),
          "rope_theta": a.rope_base,
          "rope_parameters": {"rope_theta": a.rope_base, "rope_type": "default", **dict(a.rope_scaling)}}
