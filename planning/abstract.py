"""The run `flaxforge train` would make, built abstractly on a target's compile-only devices: the same mesh
(trainer/mesh.py), train state (trainer/state.py: model, LoRA, optimizer; `nnx.eval_shape`, nothing
allocated, no weights read) and jitted train step (trainer/steps.py, with its shardings and donation), fed
the shapes of one global batch as the host pipeline delivers it.

A language model's batch needs nothing but data.seq_len (and the vocabulary: the pretrained config.json's,
else bytes); other data is prepared as `train` prepares it, and one batch of it gives the shapes.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from flaxforge.data import pipeline
from flaxforge.models import hf
from flaxforge.trainer import feed as feed_lib, fields, mesh as mesh_lib, run_data, state as state_lib
from flaxforge.trainer import steps as steps_lib
from flaxforge.trainer import workdir as workdir_lib


@dataclasses.dataclass
class AbstractRun:
  """What the plan compiles: `step.lower(*args)` is the program `train` runs each step."""
  config: object
  mesh: jax.sharding.Mesh
  info: dict
  structure: state_lib.Structure
  step: steps_lib.TrainStep
  batch: dict  # ShapeDtypeStructs of one global batch, sharded as the host feed shards it
  metrics: dict  # ShapeDtypeStructs of the step's metric sums

  @property
  def args(self) -> tuple:
    return self.structure.abstract, self.metrics, self.batch


def data_info(config) -> dict:
  """The dataset metadata the model is built from. A language model on text (data.name lm_text, bytes or a
  pretrained model's tokenizer) reads no data; anything else is loaded as `train` loads it."""
  data = config.data
  pretrained = config.model.get("pretrained", None)
  if data.name == "lm_text" and (data.get("tokenizer", "") != "hf" or pretrained):
    vocab = hf.read_config(str(workdir_lib.resolve(pretrained))).config["vocab_size"] if pretrained else 256
    return {"task": "lm", "vocab_size": int(vocab), "seq_len": int(data.seq_len)}
  return run_data.load_data(config).info


def batch_spec(config, info: dict, mesh) -> dict:
  """One global batch's ShapeDtypeStructs on the batch sharding (data x fsdp) that the host feed uses."""
  size, sharding = config.data.batch_size, mesh_lib.batch_sharding(mesh)
  if info.get("task") == "lm" and "num_classes" not in info:
    shapes = {"inputs": ((size, info["seq_len"]), jnp.int32), "label": ((size, info["seq_len"]), jnp.int32),
              "mask": ((size,), jnp.float32)}
  else:
    data = run_data.load_data(config)
    one = next(pipeline.train_batches(data.split("train"), 1, 1, seed=0, transform=data.train_transform,
                                      threads=0))
    shapes = {k: ((size,) + np.shape(v)[1:], np.asarray(v).dtype) for k, v in one.items()}
  return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding) for k, (shape, dtype) in shapes.items()}


def build(config, devices) -> AbstractRun:
  """The abstract run of `config` on `devices` (a target's compile-only devices). UserError for what
  `train` refuses: a bad config, a batch the mesh cannot split, a sequence past a model's positions."""
  fields.validate(config)
  run_data.check_positions(config)
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  feed_lib.plan(fields.Feed.of(config), fields.Train.of(config), config.data.batch_size, mesh)  # train's checks
  info = data_info(config)
  structure, _ = state_lib.structure(config, info, mesh, max(config.train.num_steps, 1))
  step = steps_lib.make_train_step(structure, mesh, loss_kind=config.loss,
                                   label_smoothing=config.train.label_smoothing,
                                   accum_steps=config.train.grad_accum_steps)
  replicated = mesh_lib.replicated(mesh)
  metrics = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                         jax.eval_shape(lambda: steps_lib.train_metrics_init(mesh)))
  return AbstractRun(config, mesh, info, structure, step, batch_spec(config, info, mesh), metrics)
