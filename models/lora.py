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
import math

import jax
import jax.numpy as jnp
from flax import nnx

from flaxforge.core.errors import UserError
from flaxforge.models import fields, graph


# "qkv" means the attention's input projections however the model holds them: one fused qkv layer, or
# separate q and kv layers (grouped-query attention, as in Llama), so one target list serves every family.
_ALIASES = {"qkv": ("qkv", "q", "kv")}


class _Adapted:
  """Mixed in before nnx.Linear / nnx.LinearGeneral: adds the low-rank update to the layer's output."""

  def __call__(self, x):
    y = super().__call__(x)
    inputs = x.reshape(*x.shape[:x.ndim - self.lora_in_dims], -1).astype(y.dtype)
    delta = (inputs @ self.lora_a[...].astype(y.dtype)) @ self.lora_b[...].astype(y.dtype)
    return y + (delta * self.lora_scale).reshape(y.shape)

  def lora_delta(self):
    """The adapters' update of the kernel, float32 in the kernel's shape."""
    return (self.lora_a[...] @ self.lora_b[...] * self.lora_scale).reshape(self.kernel[...].shape)


class LoRALinear(_Adapted, nnx.Linear):
  pass


class LoRALinearGeneral(_Adapted, nnx.LinearGeneral):
  pass


_ADAPTED = {nnx.Linear: LoRALinear, nnx.LinearGeneral: LoRALinearGeneral}


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
  """The filter of the parameters LoRA never changes (the base: every parameter `trainable` excludes), or
  None without LoRA."""
  return nnx.All(nnx.Param, nnx.Not(trainable(cfg))) if enabled(cfg) else None


def apply(model: nnx.Module, cfg, *, rngs) -> nnx.Module:
  """Adds adapters to every dense layer of `model` whose attribute name is in cfg.lora.targets (`cfg` is
  `config.model`; nothing without a rank). Raises UserError when no layer has a target's name."""
  lora = options(cfg)
  if not lora.rank:
    return model
  rank, alpha = lora.rank, float(lora.alpha)
  targets = {t.strip() for t in lora.targets.split(",") if t.strip()}
  names = {name for t in targets for name in _ALIASES.get(t, (t,))}
  adapted = set()
  for path, layer in list(nnx.iter_graph(model)):
    if path and path[-1] in names and type(layer) in _ADAPTED:
      graph.replace(model, path, lambda layer: _adapt(layer, rank, alpha, rngs))
      adapted.add(path[-1])
  missing = {t for t in targets if not adapted & set(_ALIASES.get(t, (t,)))}
  if missing:
    raise UserError(f"model.lora.targets names no dense layer: {', '.join(sorted(missing))}; use "
                    "attention's qkv (or q, kv with grouped-query attention), out or the MLP's gate, up, down")
  return model


def _adapt(layer, rank, alpha, rngs):
  """The adapted twin of `layer`: the same attributes (its kernel and bias Params included), in its
  `_ADAPTED` class, plus the adapters."""
  kernel = layer.kernel[...]
  in_dims = len(layer.axis) if isinstance(layer, nnx.LinearGeneral) else 1
  fan_in, fan_out = math.prod(kernel.shape[:in_dims]), math.prod(kernel.shape[in_dims:])
  twin = object.__new__(_ADAPTED[type(layer)])
  twin.__dict__.update(layer.__dict__)
  twin.lora_in_dims, twin.lora_scale = in_dims, alpha / rank
  twin.lora_a = nnx.LoRAParam(jax.random.normal(rngs.params(), (fan_in, rank), jnp.float32) / math.sqrt(fan_in))
  twin.lora_b = nnx.LoRAParam(jnp.zeros((rank, fan_out), jnp.float32))
  return twin


def merged(model: nnx.Module) -> nnx.Module:
  """`model` with every adapter folded into its kernel (kernel += A B alpha / rank); the adapters stay but
  no longer matter to what is exported (export writes kernels only)."""
  for _, layer in nnx.iter_graph(model):
    if isinstance(layer, _Adapted):
      layer.kernel[...] = (layer.kernel[...] + layer.lora_delta()).astype(layer.kernel[...].dtype)
  return model
