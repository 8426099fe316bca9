"""The train state: model and `nnx.Optimizer`, split once into a static graphdef and a pure state pytree.

The state is created directly sharded: `nnx.eval_shape` gives its structure, the parameters' logical axis
names give each leaf's NamedSharding, and a jitted init writes every shard where it belongs, so the full
model is never materialised on one device.
"""
import dataclasses

import jax
from flax import nnx
from jax.sharding import Mesh

from flaxforge.core import paths
from flaxforge.models import fields as model_fields, hf, lora, registry
from flaxforge.trainer import checkpoint, fields
from flaxforge.trainer import mesh as mesh_lib
from flaxforge.trainer import optim


@dataclasses.dataclass(frozen=True)
class Structure:
  """What is static about a train state: how to merge it back, in train or eval mode, and where it lives."""
  graphdef: nnx.GraphDef
  eval_graphdef: nnx.GraphDef
  abstract: nnx.State  # ShapeDtypeStructs carrying their shardings: the restore target
  shardings: nnx.State
  rules: tuple  # the (logical name, mesh axes) table the shardings came from: the activations' too


def _model(config, info, factory):
  seed = fields.Run.of(config).seed
  return registry.build(config.model, info, rngs=nnx.Rngs(params=seed, dropout=seed + 1), factory=factory)


def _init_fn(config, info, total_steps, model_factory):
  optimizer = fields.Optimizer.of(config)

  def init():
    model = _model(config, info, model_factory)
    return model, nnx.Optimizer(model, optim.build(optimizer, total_steps), wrt=lora.trainable(config.model))
  return init


def structure(config, info, mesh: Mesh, total_steps: int, model=None) -> tuple[Structure, callable]:
  """The state's structure on `mesh`, and a function that creates the state there. `model`: a factory
  `(cfg, info, rngs) -> nnx.Module` used instead of `config.model.name` (the Python API's `model=`)."""
  init = _init_fn(config, info, total_steps, model)
  shape = _structure(init, config, mesh)
  create = jax.jit(lambda: nnx.split(init())[1], out_shardings=shape.shardings)
  return shape, with_pretrained(config.model, create, shape.shardings)


def model_structure(config, info, mesh: Mesh, model=None) -> Structure:
  """The structure of the train state's model half alone, for a trained run's consumers (eval, predict,
  serve, export, explain, generate), which never use the optimizer: no optimizer is built. Its state is
  `{0: model}` as in the train state (the checkpoint's names, "0.<path>"), and its graphdefs merge into
  `(model, None)`, so code written for `model, _ = nnx.merge(graphdef, state)` serves both."""
  return _structure(lambda: (_model(config, info, model), None), config, mesh)


def _structure(init, config, mesh: Mesh) -> Structure:
  """`init`'s (model, optimizer or None) as a Structure on `mesh`, without creating any array."""
  abstract_model, abstract_opt = nnx.eval_shape(init)
  graphdef, abstract = nnx.split((abstract_model, abstract_opt))
  abstract_model.eval()
  eval_graphdef, _ = nnx.split((abstract_model, abstract_opt))
  rules = mesh_lib.rules(fields.Mesh.of(config).rules)
  shardings = mesh_lib.state_shardings(abstract, mesh, rules)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  return Structure(graphdef, eval_graphdef, abstract, shardings, rules)


def with_pretrained(cfg, create, shardings):
  """`create`, then cfg.pretrained's weights written over the model's body in place (a new head stays as
  initialised). Only a new state is made this way: a resumed run's checkpoint already holds everything."""
  path = model_fields.Pretrained.read(cfg).pretrained
  if not path:
    return create

  def create_pretrained():
    state = create()
    state[0] = hf.load_params(path, state[0], shardings[0])
    return state
  return create_pretrained


def frozen_base(cfg) -> checkpoint.FrozenBase | None:
  """`cfg` is `config.model`: with LoRA over `pretrained` weights, the base that checkpoints reference
  instead of holding it (read again from `pretrained` on restore)."""
  path, is_frozen = model_fields.Pretrained.read(cfg).pretrained, lora.frozen(cfg)
  if not path or is_frozen is None:
    return None
  path = paths.expand(path)

  def load(abstract):  # the model half of the train state (key 0) read onto the abstract leaves' shardings
    return nnx.State({0: hf.load_params(path, abstract[0])})
  return checkpoint.FrozenBase(is_frozen, {"path": path, "sha256": hf.content_hash(path)}, load)


def parameter_count(abstract: nnx.State, which=nnx.Param) -> int:
  """Parameters (those `which` selects, e.g. `lora.trainable(cfg)`) in the model half of a (possibly
  abstract) train state."""
  return sum(x.size for x in jax.tree.leaves(nnx.filter_state(abstract[0], which)))


def parameters_line(cfg, abstract: nnx.State) -> str:
  """'22,648,707 parameters (48,751 trained: LoRA rank 4)', or '22,599,956 parameters' when all are trained."""
  total, trained = parameter_count(abstract), parameter_count(abstract, lora.trainable(cfg))
  lora_part = f" ({trained:,} trained: LoRA rank {int(cfg.lora.rank)})" if trained < total else ""
  return f"{total:,} parameters{lora_part}"
