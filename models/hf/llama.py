"""Llama-family decoders (Llama 2/3, Mistral, Qwen2): pre-norm with RMSNorm, RoPE (with its scaling
options), grouped-query attention, SwiGLU, an untied head unless tie_word_embeddings; Qwen2's q/k/v
biases. PyTorch Linear weights [out, in] are transposed; Hugging Face's q/k weights are already in the
half-split rotary layout that ours uses, so heads need no permutation. Mistral's sliding window is not
applied: outputs agree for sequences up to the window (4,096 tokens)."""
import dataclasses

from flaxforge.core.errors import UserError
from flaxforge.models import gpt
from flaxforge.models.hf.layout import heads_in, heads_out, linear, table, vector
from flaxforge.models.transformer import Arch

MODEL_TYPES = ("llama", "mistral", "qwen2")
ANCHOR = "embed_tokens.weight"
EXPORT_PREFIX = "model."  # as LlamaForCausalLM names them


@dataclasses.dataclass(frozen=True)
class Config:
  """The config.json fields read here, with transformers' LlamaConfig defaults, except max_position_embeddings:
  Llama 2's 4,096 (LlamaConfig says 2,048; every family's config.json sets it)."""
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


def _rope(c: Config) -> tuple[float, tuple]:
  """(theta, scaling pairs) from transformers v5's rope_parameters or v4's rope_theta + rope_scaling."""
  params = dict(c.rope_parameters or c.rope_scaling or {})
  theta = float(params.pop("rope_theta", c.rope_theta))
  kind = params.get("rope_type", params.get("type", "default"))
  return theta, (() if kind == "default" else tuple(sorted(params.items())))


def arch(c: Config, padded_vocab: int) -> tuple[Arch, bool]:
  d, n = c.hidden_size, c.num_attention_heads
  qwen = c.model_type == "qwen2"
  if c.hidden_act != "silu" or (c.head_dim or d // n) != d // n or (not qwen and c.attention_bias != c.mlp_bias):
    raise UserError(f"{c.model_type} with hidden_act={c.hidden_act!r}, head_dim={c.head_dim} or attention_bias "
                    "!= mlp_bias is not supported; use silu, head_dim = hidden_size / heads")
  theta, scaling = _rope(c)
  return Arch(num_layers=c.num_hidden_layers, embed_dim=d, num_heads=n, mlp_dim=c.intermediate_size,
              max_len=c.max_position_embeddings, vocab_size=c.vocab_size, padded_vocab=padded_vocab, norm="rms",
              position="rope", use_bias=not qwen and c.mlp_bias, qkv_bias=qwen or c.attention_bias,
              num_kv_heads=c.num_key_value_heads or n, activation="silu", gated_mlp=True, norm_eps=c.rms_norm_eps,
              rope_base=theta, rope_scaling=scaling), c.tie_word_embeddings


def matches(a: Arch, tie: bool) -> bool:
  return (a.block == "pre" and a.position == "rope" and a.norm == "rms" and a.gated_mlp
          and a.activation == "silu" and not a.token_types)


def config_json(a: Arch, tie: bool) -> dict:
  qwen = a.qkv_bias and not a.use_bias
  rope = {"rope_theta": a.rope_base, "rope_type": "default", **dict(a.rope_scaling)}
  c = {"architectures": ["Qwen2ForCausalLM" if qwen else "LlamaForCausalLM"],
       "model_type": "qwen2" if qwen else "llama", "vocab_size": a.vocab_size, "hidden_size": a.embed_dim,
       "num_hidden_layers": a.num_layers, "num_attention_heads": a.num_heads, "num_key_value_heads": a.kv_heads,
       "intermediate_size": a.mlp_dim, "hidden_act": "silu", "max_position_embeddings": a.max_len,
       "rms_norm_eps": a.norm_eps, "rope_theta": a.rope_base, "rope_parameters": rope,
       "tie_word_embeddings": tie}
  if not qwen:
    c.update(attention_bias=a.use_bias, mlp_bias=a.use_bias, head_dim=a.head_dim)
  return c


def build(a: Arch, tie: bool, *, rngs):
  return gpt.GPT(a, tie_embeddings=tie, rngs=rngs)


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
    t[ours + ("attn_norm", "scale")] = vector(theirs + "input_layernorm.weight", d)
    t[ours + ("mlp_norm", "scale")] = vector(theirs + "post_attention_layernorm.weight", d)
    for ours_name, theirs_name, shape in (("gate", "gate_proj", (d, m)), ("up", "up_proj", (d, m)),
                                          ("down", "down_proj", (m, d))):
      t[ours + ("mlp", ours_name, "kernel")] = linear(f"{theirs}mlp.{theirs_name}.weight", *shape)
      if a.use_bias:
        t[ours + ("mlp", ours_name, "bias")] = vector(f"{theirs}mlp.{theirs_name}.bias", shape[1])
    if a.use_bias:
      t[attn + ("out", "bias")] = vector(o + ".bias", d)
  return t
