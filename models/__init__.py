"""Networks by name: a built-in module or the user's own (`my_models.convnet` or `path/to/convnet.py`), whose
`from_config(cfg, info, *, rngs)` builds an `nnx.Module` whose `__call__(inputs)` returns float32 logits.
Parameters that carry logical axis names shard by the mesh rules (trainer/mesh.py); others are replicated."""
import flax

from flaxforge.core import imports
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
    "convnet": "flaxforge.models.convnet",
}


def module(cfg):
  """The module `cfg.name` names; UserError when it cannot be imported or lacks `from_config`."""
  if ":" in cfg.name:  # how flaxforge.train records a factory
    raise UserError(f"model {cfg.name!r} was given to flaxforge.train as a Python function; pass it again as "
                    "model=... (flaxforge.evaluate, flaxforge.Predictor.from_workdir)")
  return imports.resolve(cfg.name, _MODULES, "from_config", "model.name", "model")


def build(cfg, info, *, rngs, factory=None):
  """`cfg` is `config.model`, `info` the dataset's metadata dict. `factory(cfg, info, rngs=rngs)`, when
  given (the Python API's `model=`), builds the model instead of `cfg.name`."""
  model = factory(cfg, info, rngs=rngs) if factory is not None else module(cfg).from_config(cfg, info, rngs=rngs)
  return lora.apply(model, cfg, rngs=rngs)  # low-rank adapters, when config.model.lora asks for them


def flops_per_example(cfg, info) -> float | None:
  """The model's analytic training FLOPs per example (trainer/flops.py conventions), if it declares them
  (a model given as a Python factory declares none: the trainer uses XLA's count)."""
  if ":" in cfg.name:
    return None
  count = getattr(module(cfg), "flops_per_example", None)
  return float(count(cfg, info)) if count else None
