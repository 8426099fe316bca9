"""Networks by name: a built-in module or the user's own (`my_models.convnet` or `path/to/convnet.py`), whose
`from_config(cfg, info, *, rngs)` builds an `nnx.Module` whose `__call__(inputs)` returns float32 logits.
A transformer with `model.pretrained` set takes that Hugging Face directory's architecture (models/hf); so does
a built-in model that takes no pretrained weights (image_folder's convnet), which becomes the model of that
directory's family (a ViT).
Parameters that carry logical axis names shard by the mesh rules (trainer/mesh.py); others are replicated.
A user's model, too, may be built outside a mesh: the built-in models this imports set Flax up for that
(models/initializers.py).
"""
from flaxforge.core import imports
from flaxforge.core.errors import UserError
from flaxforge.models import fields, hf, lora

_MODULES = {
    "mlp": "flaxforge.models.mlp",
    "text_cnn": "flaxforge.models.text_cnn",
    "bag_of_words": "flaxforge.models.bag_of_words",
    "bert": "flaxforge.models.bert",
    "gpt": "flaxforge.models.gpt",
    "convnet": "flaxforge.models.convnet",
    "vit": "flaxforge.models.vit",
}


def module(cfg):
  """The module `cfg.name` names; UserError when it cannot be imported or lacks `from_config`."""
  if ":" in cfg.name:  # how flaxforge.train records a factory
    raise UserError(f"model {cfg.name!r} was given to flaxforge.train as a Python function; pass it again as "
                    "model=... (flaxforge.evaluate, flaxforge.Predictor.from_workdir)")
  return imports.resolve(name(cfg), _MODULES, "from_config", "model.name", "model")


def name(cfg) -> str:
  """The model `cfg` builds: cfg.name, or for a built-in model without a model.pretrained field of its own
  (convnet) in a config that sets one, the model of that Hugging Face directory's family (`vit` for a ViT)."""
  if cfg.name in _MODULES and fields.Pretrained not in fields.candidates(cfg.name):
    path = fields.Pretrained.read(cfg).pretrained
    if path:
      return hf.read_config(path).model
  return cfg.name


def recorded(name: str) -> str:
  """`model.name` as a run records it (core/imports.py `recorded`: a module of the user's folder as its file)."""
  return imports.recorded(name, _MODULES)


def build(cfg, info, *, rngs, factory=None):
  """`cfg` is `config.model`, `info` the dataset's metadata dict. `factory(cfg, info, rngs=rngs)`, when
  given (the Python API's `model=`), builds the model instead of `cfg.name`."""
  if factory is not None:
    model = factory(cfg, info, rngs=rngs)
  else:
    model = module(cfg).from_config(cfg, info, rngs=rngs, **_pretrained(cfg))
  return lora.apply(model, cfg, rngs=rngs)  # low-rank adapters, when config.model.lora asks for them


def flops_per_example(cfg, info) -> float | None:
  """The model's analytic training FLOPs per example, if it declares them (a model given as a Python factory
  declares none: the trainer uses XLA's count).

  The convention of every model's count (as in shared/bench/common.py): FLOPs = 2 x the multiply-accumulates
  of matmuls and convolutions; embeddings, activations, softmax, norms, pooling and the optimizer are not
  counted. A training step costs 3 x forward, except where an input gradient is never needed (a first layer
  fed by data).
  """
  if ":" in cfg.name:
    return None
  count = getattr(module(cfg), "flops_per_example", None)
  return float(count(cfg, info, **_pretrained(cfg))) if count else None


def _pretrained(cfg) -> dict:
  """{"pretrained": hf.Pretrained} (the architecture and head tying of model.pretrained's config.json) for a
  model that declares the field and has it set, as its from_config's and flops_per_example's keyword; else {}."""
  if fields.Pretrained not in fields.candidates(name(cfg)):
    return {}
  path = fields.Pretrained.read(cfg).pretrained
  return {"pretrained": hf.read_config(path)} if path else {}
