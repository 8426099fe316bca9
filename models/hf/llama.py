"""Llama-family decoders (Llama 2/3, Mistral, Qwen2, Qwen3): pre-norm with RMSNorm, RoPE (with its scaling
options), grouped-query attention, SwiGLU, an untied head unless tie_word_embeddings; Qwen2's q/k/v biases,
Qwen3's per-head q/k RMSNorm, a head width of its own (head_dim), and the sliding windows: Mistral's on every
layer, Qwen2/Qwen3's on the layers `layer_types` (or use_sliding_window from max_window_layers on) names.
PyTorch Linear weights [out, in] are transposed; Hugging Face's q/k weights are already in the half-split
rotary layout that ours uses, so heads need no permutation. The tensor table serves Gemma too (gemma2.py)."""
import dataclasses

from flaxforge.core.errors import UserError
from flaxforge.models import gpt
from flaxforge.models.hf.layout import heads_in, heads_out, linear, table, vector
from flaxforge.models.transformer import Arch

MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
ANCHOR = "embed_tokens.weight"
EXPORT_PREFIX = "model."  # as LlamaForCausalLM names them
ROPE_TYPES = ("default", "linear", "llama3")  # attention.rope_frequencies
ROPE_KEYS = {"rope_type", "type", "rope_theta", "factor", "low_freq_factor", "high_freq_factor",
             "original_max_position_embeddings"}  # what those types read; another key changes what they compute
SLIDING, FULL = "sliding_attention", "full_attention"


@dataclasses.dataclass(frozen=True)
class Config:
  """The config.json fields read here, with transformers' LlamaConfig defaults (Mistral's and Qwen's where
  theirs differ: sliding_window, max_window_layers), except max_position_embeddings: Llama 2's 4,096
  (LlamaConfig says 2,048; every family's config.json sets it). A null sliding_window is no window."""
  model_type: str
  hidden_size: int
  num_attention_heads: int
  num_hidden_layers: int
  intermediate_size: int
  vocab_size: int
  num_key_value_heads: int | None = None  # num_attention_heads
  head_dim: int | None = None  # hidden_size / num_attention_heads
  hidden_act: str = "silu"
  attention_bias: bool = False
  mlp_bias: bool = False
  max_position_embeddings: int = 4096
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0  # transformers v4; v5 moves it into rope_parameters
  rope_scaling: dict | None = None  # transformers v4
  rope_parameters: dict | None = None  # transformers v5
  tie_word_embeddings: bool = False
  sliding_window: int | None = 4096  # Mistral: every layer; Qwen: with use_sliding_window only
  use_sliding_window: bool = False  # Qwen2/Qwen3
  max_window_layers: int = 28  # Qwen2/Qwen3 (v4): the layers from this one on are windowed
  layer_types: tuple | None = None  # transformers v5: per layer sliding_attention | full_attention (Qwen)


def rope(params: dict | None, theta: float) -> tuple[float, tuple]:
  """(theta, scaling pairs) from a rope_parameters (v5) or rope_scaling (v4) dict, v4's rope_theta the
  fallback; UserError for a type or a key that rope_frequencies does not compute."""
  params = dict(params or {})
  theta = float(params.pop("rope_theta", theta))
  kind = params.get("rope_type", params.get("type", "default"))
  if kind not in ROPE_TYPES:
    raise UserError(f"rope_parameters.rope_type {kind!r} is not supported (flaxforge computes "
                    f"{', '.join(ROPE_TYPES)})")
  unknown = sorted(k for k, v in params.items() if k not in ROPE_KEYS and not (k == "partial_rotary_factor"
                                                                                and v == 1.0))
  if unknown:
    raise UserError(f"rope_parameters.{unknown[0]} is not supported (flaxforge computes RoPE over the whole head "
                    f"with rope_type {', '.join(ROPE_TYPES)})")
  return theta, (() if kind == "default" else tuple(sorted(params.items())))


def _windows(c: Config) -> tuple:
  """Per layer, the window transformers' modeling applies (0 = none); () when no layer has one."""
  if c.model_type == "llama":  # LlamaConfig has no window
    return ()
  window = c.sliding_window if c.model_type == "mistral" or c.use_sliding_window else None
  if not window:
    return ()
  if c.model_type == "mistral":  # every layer (MistralModel ignores layer_types)
    return (window,) * c.num_hidden_layers
  types = c.layer_types or [SLIDING if i >= c.max_window_layers else FULL for i in range(c.num_hidden_layers)]
  windows = tuple(window if t == SLIDING else 0 for t in types)
  return windows if any(windows) else ()


def arch(c: Config, padded_vocab: int) -> tuple[Arch, bool]:
  d, n = c.hidden_size, c.num_attention_heads
  qwen2 = c.model_type == "qwen2"
  if c.hidden_act != "silu":
    raise UserError(f"hidden_act {c.hidden_act!r} is not supported for {c.model_type} (flaxforge computes silu)")
  if c.model_type in ("llama", "mistral") and c.attention_bias != c.mlp_bias:
    raise UserError(f"attention_bias={c.attention_bias} with mlp_bias={c.mlp_bias} is not supported (flaxforge "
                    "puts biases on every dense layer or on none)")
  if c.model_type == "qwen3" and c.attention_bias:
    raise UserError("attention_bias=true is not supported for qwen3 (flaxforge cannot bias o_proj without the "
                    "MLP)")
  theta, scaling = rope(c.rope_parameters or c.rope_scaling, c.rope_theta)
  head = c.head_dim or d // n
  use_bias = c.model_type in ("llama", "mistral") and c.mlp_bias
  return Arch(num_layers=c.num_hidden_layers, embed_dim=d, num_heads=n, mlp_dim=c.intermediate_size,
              max_len=c.max_position_embeddings, vocab_size=c.vocab_size, padded_vocab=padded_vocab, norm="rms",
              position="rope", use_bias=use_bias, qkv_bias=qwen2 or use_bias, num_kv_heads=c.num_key_value_heads or n,
              activation="silu", gated_mlp=True, norm_eps=c.rms_norm_eps, rope_base=theta, rope_scaling=scaling,
              head_size=0 if head == d // n else head, qk_norm=c.model_type == "qwen3",
              windows=_windows(c)), c.tie_word_embeddings


def matches(a: Arch, tie: bool) -> bool:
  return (a.block == "pre" and a.position == "rope" and a.norm == "rms" and a.gated_mlp
          and a.activation == "silu" and not a.token_types and not a.norm_offset and not a.sandwich_norm
          and not a.embed_scale and not a.attn_scale and not a.attn_softcap and not a.logit_softcap
          and not a.local_rope_base and _model_type(a) is not None)


def _model_type(a: Arch) -> str | None:
  """The model_type whose modeling computes `a`, or None: Qwen2 (q/k/v biases only), Qwen3 (q/k norms),
  Mistral (one window on every layer), else Llama."""
  if a.qk_norm:
    return "qwen3" if not a.use_bias and not a.qkv_bias else None
  if a.qkv_bias and not a.use_bias:
    return "qwen2"
  if a.windows and len(set(a.windows)) > 1:  # windows on some layers only: Qwen's layer_types
    return None
  return "mistral" if a.windows and a.windows[0] else "llama"


def config_json(a: Arch, tie: bool) -> dict:
  kind = _model_type(a)
  rope_parameters = {"rope_theta": a.rope_base, "rope_type": "default", **dict(a.rope_scaling)}
  architectures = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                   "qwen3": "Qwen3ForCausalLM"}
  c = {"architectures": [architectures[kind]], "model_type": kind, "vocab_size": a.vocab_size,
       "hidden_size": a.embed_dim, "num_hidden_layers": a.num_layers, "num_attention_heads": a.num_heads,
       "num_key_value_heads": a.kv_heads, "intermediate_size": a.mlp_dim, "hidden_act": "silu",
       "max_position_embeddings": a.max_len, "rms_norm_eps": a.norm_eps, "rope_theta": a.rope_base,
       "rope_parameters": rope_parameters, "tie_word_embeddings": tie, "head_dim": a.head_dim}
  if kind in ("llama", "mistral"):
    c.update(attention_bias=a.use_bias, mlp_bias=a.use_bias)
  if kind == "mistral":
    c.update(sliding_window=a.windows[0] if a.windows else None)
  if kind in ("qwen2", "qwen3"):
    window = max(a.windows, default=0)
    c.update(use_sliding_window=bool(window), sliding_window=window or None, max_window_layers=a.num_layers,
             layer_types=[SLIDING if a.window(i) else FULL for i in range(a.num_layers)])
  return c


def build(a: Arch, tie: bool, *, rngs):
  return gpt.GPT(a, tie_embeddings=tie, rngs=rngs)


# Each block's norms: ours -> Hugging Face's, for Llama's two and Gemma's four (arch.sandwich_norm).
NORMS = {False: {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm"},
         True: {"attn_norm": "input_layernorm", "attn_out_norm": "post_attention_layernorm",
                "mlp_norm": "pre_feedforward_layernorm", "mlp_out_norm": "post_feedforward_layernorm"}}


def tensors(a: Arch, tie: bool) -> dict:
  d, n, kv, h, m = a.embed_dim, a.num_heads, a.kv_heads, a.head_dim, a.mlp_dim
  t = {("transformer", "embed", "embedding"): table("embed_tokens.weight", a.vocab_size, d),
       ("transformer", "final_norm", "scale"): vector("norm.weight", d)}
  if not tie:
    t[("lm_head", "kernel")] = linear("lm_head.weight", d, a.vocab_size)
  for i in range(a.num_layers):
    ours, theirs = ("transformer", "blocks", i), f"layers.{i}."
    q, k, v, o = (f"{theirs}self_attn.{x}_proj" for x in "qkvo")
    attn = ours + ("attn",)
    for suffix, param, bias in ((".weight", "kernel", False), (".bias", "bias", True)):
      if bias and not a.qkv_bias:
        continue
      if kv == n:  # one fused [d, 3, N, H] projection
        t[attn + ("qkv", param)] = heads_in([q + suffix, k + suffix, v + suffix], n, h, d, bias=bias)
      else:
        t[attn + ("q", param)] = heads_in([q + suffix], n, h, d, bias=bias)
        t[attn + ("kv", param)] = heads_in([k + suffix, v + suffix], kv, h, d, bias=bias)
    t[attn + ("out", "kernel")] = heads_out(o + ".weight", n, h, d)
    if a.qk_norm:
      t[attn + ("q_norm", "scale")] = vector(f"{theirs}self_attn.q_norm.weight", h)
      t[attn + ("k_norm", "scale")] = vector(f"{theirs}self_attn.k_norm.weight", h)
    for ours_norm, theirs_norm in NORMS[a.sandwich_norm].items():
      t[ours + (ours_norm, "scale")] = vector(f"{theirs}{theirs_norm}.weight", d)
    for ours_name, theirs_name, shape in (("gate", "gate_proj", (d, m)), ("up", "up_proj", (d, m)),
                                          ("down", "down_proj", (m, d))):
      t[ours + ("mlp", ours_name, "kernel")] = linear(f"{theirs}mlp.{theirs_name}.weight", *shape)
      if a.use_bias:
        t[ours + ("mlp", ours_name, "bias")] = vector(f"{theirs}mlp.{theirs_name}.bias", shape[1])
    if a.use_bias:
      t[attn + ("out", "bias")] = vector(o + ".bias", d)
  return t
