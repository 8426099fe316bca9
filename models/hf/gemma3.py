"""Gemma 3 text decoders (transformers' Gemma3ForCausalLM, model_type gemma3_text): Gemma 2's layout
(gemma2.py) with per-head q/k norms (Gemma's 1 + weight), five sliding-window layers to a global one
(layer_types; transformers v4: sliding_window_pattern), and RoPE per layer type: the global layers' base and
scaling (rope_parameters.full_attention; v4: rope_theta, rope_scaling), the local ones' own
(rope_parameters.sliding_attention; v4: rope_local_base_freq). No soft-capping unless config.json sets it."""
import dataclasses

from flaxforge.models.hf import gemma2, llama
from flaxforge.models.transformer import Arch

MODEL_TYPES = ("gemma3_text",)
ANCHOR = llama.ANCHOR
EXPORT_PREFIX = llama.EXPORT_PREFIX
build, tensors = llama.build, llama.tensors


@dataclasses.dataclass(frozen=True)
class Config:
  """The config.json fields read here, with transformers' Gemma3TextConfig defaults."""
  model_type: str
  hidden_size: int
  num_attention_heads: int
  num_hidden_layers: int
  intermediate_size: int
  vocab_size: int
  num_key_value_heads: int = 4
  head_dim: int = 256
  hidden_activation: str = "gelu_pytorch_tanh"
  max_position_embeddings: int = 131072
  rms_norm_eps: float = 1e-6
  rope_theta: float = 1_000_000.0  # transformers v4: the global layers'
  rope_local_base_freq: float = 10_000.0  # transformers v4: the local layers'
  rope_scaling: dict | None = None  # transformers v4: the global layers'
  rope_parameters: dict | None = None  # transformers v5: {full_attention: {...}, sliding_attention: {...}}
  attention_bias: bool = False
  query_pre_attn_scalar: float = 256
  sliding_window: int | None = 4096
  sliding_window_pattern: int = 6  # transformers v4
  layer_types: tuple | None = None  # transformers v5
  final_logit_softcapping: float | None = None
  attn_logit_softcapping: float | None = None
  use_bidirectional_attention: bool | None = False
  tie_word_embeddings: bool = True


def arch(c: Config, padded_vocab: int) -> tuple[Arch, bool]:
  params = c.rope_parameters or {}
  base, scaling = llama.rope(params.get(llama.FULL, c.rope_scaling), c.rope_theta)
  local_base, local_scaling = llama.rope(params.get(llama.SLIDING), c.rope_local_base_freq)
  return gemma2.gemma_arch(c, padded_vocab, rope_base=base, rope_scaling=scaling, qk_norm=True,
                           windows=gemma2.layer_windows(c, c.sliding_window_pattern), local_rope_base=local_base,
                           local_rope_scaling=local_scaling)


def matches(a: Arch, tie: bool) -> bool:
  return gemma2.is_gemma(a) and a.qk_norm


def config_json(a: Arch, tie: bool) -> dict:
  rope = lambda base, scaling: {"rope_theta": base, "rope_type": "default", **dict(scaling)}
  local = (a.local_rope_base, a.local_rope_scaling) if a.local_rope_base else (a.rope_base, a.rope_scaling)
  return {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", **gemma2.gemma_config_json(a, tie),
          "rope_parameters": {llama.FULL: rope(a.rope_base, a.rope_scaling), llama.SLIDING: rope(*local)}}
