"""Low-rank adapters (LoRA, Hu et al. 2021) on a model's dense layers, chosen by attribute name
(`model.lora.targets`, e.g. "qkv,out" for attention, "up,down" for the MLP; "qkv" is the q and kv layers
of a grouped-query attention model).

An adapted `nnx.Linear`/`nnx.LinearGeneral` keeps its own kernel and bias where they were (so pretrained
weights load and export by the same paths) and gains `lora_a` [in, rank] and `lora_b` [rank, out]
(`nnx.LoRAParam`, B zero-initialised: training starts from the pretrained function); its output becomes
base(x) + x A B * alpha / rank. The optimizer updates `nnx.LoRAParam` (and a classification head and its
pooler) only (`trainable`), so the base weights are frozen and carry no optimizer state; `merged` folds the adapters
into the kernels for export.
"""
import contextlib
import math

import jax
import jax.numpy as jnp
from flax import nnx

from flaxforge.core.errors import UserError
from flaxforge.models import fields, graph, quant


# "qkv" means the attention's input projections however the model holds them: one fused qkv layer, or
# separate q and kv layers (grouped-query attention, as in Llama), so one target list serves every family.
_ALIASES = {"qkv": ("qkv", "q", "kv")}


class _Adapted:
  """Mixed in before nnx.Linear / nnx.LinearGeneral: adds the low-rank update to the layer's output."""

  def __call__(self, x):
    y = super().__call__(x)
    if not self.lora_on:
      return y
    inputs = x.reshape(*x.shape[:x.ndim - self.lora_in_dims], -1).astype(y.dtype)
    delta = (inputs @ self.lora_a[...].astype(y.dtype)) @ self.lora_b[...].astype(y.dtype)
    return y + (delta * self.lora_scale).reshape(y.shape)

  def lora_delta(self):
    """The adapters' update of the kernel, float32 in the kernel's shape."""
    shape = self.shape if isinstance(self, quant.QuantizedDense) else self.kernel[...].shape
    return (self.lora_a[...] @ self.lora_b[...] * self.lora_scale).reshape(shape)


class LoRALinear(_Adapted, nnx.Linear):
  pass


class LoRALinearGeneral(_Adapted, nnx.LinearGeneral):
  pass


class LoRAQuantized(_Adapted, quant.QuantizedDense):
  """Adapters over a quantized frozen base (QLoRA)."""


_ADAPTED = {nnx.Linear: LoRALinear, nnx.LinearGeneral: LoRALinearGeneral}
_FULL_PRECISION = ("lm_head", "head")  # output layers a quantized base keeps as they are (as QLoRA does)


def options(cfg) -> fields.LoRA:
  """`cfg` (`config.model`)'s `lora` section."""
  return fields.LoRA.read(cfg["lora"] if "lora" in cfg else None)


def enabled(cfg) -> bool:
  """`cfg` is `config.model`."""
  return options(cfg).rank > 0


def trainable(cfg):
  """The optimizer's `wrt` filter: with LoRA the adapters and a classifier's `head` and `pooler` (model.pool=
  'pooler'), else every parameter."""
  if not enabled(cfg):
    return nnx.Param
  return nnx.Any(nnx.LoRAParam, nnx.All(nnx.Param, nnx.Any(nnx.PathContains("head"), nnx.PathContains("pooler"))))


def frozen(cfg):
  """The filter of the variables LoRA never changes (the base: every parameter `trainable` excludes, and a
  quantized base's storage), or None without LoRA."""
  return nnx.Any(quant.QuantizedBase, nnx.All(nnx.Param, nnx.Not(trainable(cfg)))) if enabled(cfg) else None


def base_quant(cfg) -> str:
  """`cfg` (`config.model`)'s model.base_quant: "none", "int8" or "nf4"."""
  return fields.BaseQuant.read(cfg).base_quant


def apply(model: nnx.Module, cfg, *, rngs) -> nnx.Module:
  """Adds adapters to every dense layer of `model` whose attribute name is in cfg.lora.targets (`cfg` is
  `config.model`; nothing without a rank). Raises UserError when no layer has a target's name."""
  lora, kind = options(cfg), base_quant(cfg)
  if not lora.rank:
    if kind != "none":
      raise UserError(f"model.base_quant={kind} quantizes the frozen base of a LoRA run; set "
                      "--config.model.lora.rank=8 (or base_quant=none)")
    return model
  rank, alpha = lora.rank, float(lora.alpha)
  targets = {t.strip() for t in lora.targets.split(",") if t.strip()}
  names = {name for t in targets for name in _ALIASES.get(t, (t,))}
  adapted = set()
  for path, layer in list(nnx.iter_graph(model)):
    if path and path[-1] in names and type(layer) in _ADAPTED:
      graph.replace(model, path, lambda layer: _adapt(layer, rank, alpha, rngs, kind))
      adapted.add(path[-1])
    elif path and kind != "none" and path[-1] not in _FULL_PRECISION and type(layer) in _ADAPTED:
      graph.replace(model, path, lambda layer: quant.QuantizedDense(layer, kind))
  missing = {t for t in targets if not adapted & set(_ALIASES.get(t, (t,)))}
  if missing:
    raise UserError(f"model.lora.targets names no dense layer: {', '.join(sorted(missing))}; use "
                    "attention's qkv (or q, kv with grouped-query attention), out or the MLP's gate, up, down")
  return model


def _adapt(layer, rank, alpha, rngs, kind="none"):
  """The adapted twin of `layer`: the same attributes (its kernel and bias Params included), in its
  `_ADAPTED` class, plus the adapters; with a base_quant `kind`, a LoRAQuantized over its quantized kernel."""
  kernel = layer.kernel[...]
  in_dims = len(layer.axis) if isinstance(layer, nnx.LinearGeneral) else 1
  fan_in, fan_out = math.prod(kernel.shape[:in_dims]), math.prod(kernel.shape[in_dims:])
  if kind != "none":
    twin = LoRAQuantized(layer, kind)
  else:
    twin = object.__new__(_ADAPTED[type(layer)])
    twin.__dict__.update(layer.__dict__)
  twin.lora_in_dims, twin.lora_scale, twin.lora_on = in_dims, alpha / rank, True
  twin.lora_a = nnx.LoRAParam(jax.random.normal(rngs.params(), (fan_in, rank), jnp.float32) / math.sqrt(fan_in))
  twin.lora_b = nnx.LoRAParam(jnp.zeros((rank, fan_out), jnp.float32))
  return twin


def has_adapters(model: nnx.Module) -> bool:
  return any(isinstance(layer, _Adapted) for _, layer in nnx.iter_graph(model))


@contextlib.contextmanager
def adapters_off(model: nnx.Module):
  """Within the block `model` computes without its adapters: the frozen base (a DPO reference policy with
  no second copy of the weights). Works inside traced functions (the switch is a Python attribute)."""
  layers = [layer for _, layer in nnx.iter_graph(model) if isinstance(layer, _Adapted)]
  for layer in layers:
    layer.lora_on = False
  try:
    yield model
  finally:
    for layer in layers:
      layer.lora_on = True


def merged(model: nnx.Module) -> nnx.Module:
  """`model` with every adapter folded into its kernel (kernel += A B alpha / rank); the adapters stay but
  no longer matter to what is exported (export writes kernels only). A quantized base layer becomes a
  full-precision nnx.LinearGeneral holding its dequantized kernel (plus the adapters' update), float32."""
  for path, layer in list(nnx.iter_graph(model)):
    if isinstance(layer, quant.QuantizedDense):
      graph.replace(model, path, _dequantized)
    elif isinstance(layer, _Adapted):
      layer.kernel[...] = (layer.kernel[...] + layer.lora_delta()).astype(layer.kernel[...].dtype)
  return model


def _dequantized(layer: quant.QuantizedDense) -> nnx.LinearGeneral:
  kernel = layer.kernel(jnp.float32) + (layer.lora_delta() if isinstance(layer, _Adapted) else 0.0)
  n = layer.in_dims
  dense = nnx.LinearGeneral(layer.shape[:n], layer.shape[n:], axis=tuple(range(-n, 0)), use_bias=layer.bias is not None,
                            dtype=layer.dtype, rngs=nnx.Rngs(0))
  dense.kernel[...] = kernel
  if layer.bias is not None:
    dense.bias[...] = layer.bias[...]
  return dense
