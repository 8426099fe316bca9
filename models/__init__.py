"""Networks by name: each module's `from_config(cfg, info, rngs=...)` builds an `nnx.Module` whose
`__call__(inputs)` returns float32 logits and whose parameters carry logical axis names."""
import importlib

import flax

from flaxforge.core.errors import UserError
from flaxforge.models import lora

# Parameters get their shardings from the trainer's jitted init (`out_shardings`), so a model can also be
# built outside a mesh (tests, notebooks); Flax's eager sharding would demand a mesh at construction.
flax.config.update("flax_always_shard_variable", False)

_MODULES = {
    "mlp": "flaxforge.models.mlp",
    "text_cnn": "flaxforge.models.text_cnn",
    "bag_of_words": "flaxforge.models.bag_of_words",
    "bert": "flaxforge.models.bert",
    "gpt": "flaxforge.models.gpt",
}


def build(cfg, info, *, rngs):
  """`cfg` is `config.model`, `info` the dataset's metadata dict."""
  if cfg.name not in _MODULES:
    raise UserError(f"unknown model {cfg.name!r}; set --config.model.name to one of: {', '.join(_MODULES)}")
  model = importlib.import_module(_MODULES[cfg.name]).from_config(cfg, info, rngs=rngs)
  return lora.apply(model, cfg, rngs=rngs)


def flops_per_example(cfg, info) -> float | None:
  """The model's analytic training FLOPs per example (trainer/flops.py conventions), if it declares them."""
  module = importlib.import_module(_MODULES[cfg.name])
  count = getattr(module, "flops_per_example", None)
  return float(count(cfg, info)) if count else None
