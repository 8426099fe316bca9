"""Pure, jitted train and eval steps over (state, metric sums, batch), sharded on the mesh.

The train step never returns to the host: it adds its metric sums to an accumulator that stays on the
devices (donated, like the state), and the loop fetches that only at logging intervals.
"""
import collections
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh

from flaxforge.models import sharding
from flaxforge.trainer import flops
from flaxforge.trainer import losses, preference
from flaxforge.trainer import mesh as mesh_lib
from flaxforge.trainer.feed import Feed
from flaxforge.trainer.state import Structure

NO_STEP = jnp.iinfo(jnp.int32).max
MAX_UNROLL = 8  # steps_per_call above this runs as a loop over bodies of 8 unrolled steps


SUMS = ("loss_sum", "weight", "correct")  # what an objective's sums hold (losses.metric_sums)


def sum_names(info: dict) -> tuple[str, ...]:
  """The metric sums of the run's objective: SUMS, or preference pairs' (trainer/preference.py)."""
  return preference.SUMS if info.get("preference") else SUMS


def objective(loss_kind: str, info: dict, *, label_smoothing: float = 0.0, num_classes: int = 0,
              class_weights=None, pairs: preference.Options | None = None) -> Callable:
  """`sums(model, batch) -> metric sums` of the run's objective: `loss_kind` over `batch["inputs"]` (packed
  rows' `positions` and `segment_ids` go to the model too; `class_weights` as losses.metric_sums'), or for
  preference data (`info["preference"]`) `pairs`' objective over chosen and rejected rows
  (trainer/preference.py `batch_sums`)."""
  if info.get("preference"):
    return functools.partial(preference.batch_sums, options=pairs or preference.Options())

  def sums(model, batch, reference=None):
    del reference  # the preference objectives' alone
    packed = {k: batch[k] for k in ("positions", "segment_ids") if k in batch}
    return losses.metric_sums(loss_kind, model(batch["inputs"], **packed), batch["label"], batch["mask"],
                              num_classes=num_classes, label_smoothing=label_smoothing,
                              class_weights=class_weights)
  return sums


def train_metrics_init(mesh: Mesh, names: tuple[str, ...] = SUMS) -> dict:
  """Fresh zeroed accumulators on the devices (fresh buffers: the step donates them): the objective's sums
  `names` and the step's own."""
  return _train_metrics_zeros(mesh, names)()


@functools.lru_cache(maxsize=8)
def _train_metrics_zeros(mesh: Mesh, names: tuple[str, ...]):
  # Cached: a new jit per call recompiled at every logging interval (BENCHMARKS.md, "Figures behind trainer/
  # comments").
  def zeros():
    return {**{k: jnp.zeros((), jnp.float32) for k in names + ("grad_norm_sum", "steps", "nonfinite")},
            "first_nonfinite_step": jnp.asarray(NO_STEP, jnp.int32)}
  return jax.jit(zeros, out_shardings=mesh_lib.replicated(mesh))


def step_flops(one_step, structure: Structure, metrics: dict, batch_spec: dict) -> float:
  """XLA's FLOP count of one train step (`one_step` from make_train_step with steps_per_call=1) for a global
  batch of `batch_spec`'s shapes, NaN if unknown. It reads the lowered, unpartitioned program, so it counts
  all devices together and needs no compile (a scan's body would be counted only once)."""
  spec = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype)
  try:
    return flops.xla_flops(one_step.lower(structure.abstract, jax.tree.map(spec, metrics), jax.tree.map(spec, batch_spec)))
  except Exception:  # pylint: disable=broad-except  (an estimate must never stop training)
    return float("nan")


def eval_metrics_init(mesh: Mesh, num_classes: int, names: tuple[str, ...] = SUMS) -> dict:
  return _eval_metrics_zeros(mesh, num_classes, names)()


@functools.lru_cache(maxsize=8)
def _eval_metrics_zeros(mesh: Mesh, num_classes: int, names: tuple[str, ...]):
  def zeros():
    sums = {k: jnp.zeros((), jnp.float32) for k in names}
    if num_classes:
      sums["confusion"] = jnp.zeros((num_classes, num_classes), jnp.float32)
    return sums
  return jax.jit(zeros, out_shardings=mesh_lib.replicated(mesh))


def _loss_and_grads(model, batch, sums_of, accum_steps, wrt=nnx.Param):
  """Gradients of the summed loss for the `wrt` parameters (the optimizer's), and the metric sums
  (`sums_of(model, batch)`: `objective`'s), over `accum_steps` micro-batches in a scan."""

  def loss_fn(m, micro):
    sums = sums_of(m, micro)
    return sums["loss_sum"], sums

  grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt), has_aux=True)
  if accum_steps == 1:
    (_, sums), grads = grad_fn(model, batch)
    return grads, sums

  graphdef, model_state = nnx.split(model)
  micro = jax.tree.map(lambda x: x.reshape(accum_steps, x.shape[0] // accum_steps, *x.shape[1:]), batch)

  def body(carry, mb):
    grads, sums, model_state = carry
    m = nnx.merge(graphdef, model_state)
    (_, s), g = grad_fn(m, mb)
    return (jax.tree.map(jnp.add, grads, g), jax.tree.map(jnp.add, sums, s), nnx.state(m)), None

  # float32 sums for 16-bit parameters (model.param_dtype) too: bfloat16 would drop a small micro-batch's share
  zero_grads = jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.promote_types(x.dtype, jnp.float32)),
                            nnx.state(model, wrt))
  zero_sums = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype),
                           nnx.eval_shape(sums_of, model, jax.tree.map(lambda x: x[0], micro)))
  (grads, sums, model_state), _ = jax.lax.scan(body, (zero_grads, zero_sums, model_state), micro)
  nnx.update(model, model_state)  # the dropout RNG advanced once per micro-batch
  return grads, sums


def make_train_step(structure: Structure, mesh: Mesh, *, loss_kind: str, label_smoothing: float = 0.0,
                    accum_steps: int = 1, steps_per_call: int = 1, feed: Feed | None = None,
                    sums_of: Callable | None = None) -> "TrainStep":
  """`step(state, metrics, batch, shared={}) -> (state, metrics)`; with steps_per_call > 1 every leaf of
  `batch` has a leading axis of that many steps, run in one `lax.scan`. `sums_of(model, batch, reference)`:
  the metric sums to train on (`objective`'s), by default `loss_kind`'s over inputs and labels; `reference`
  is shared["reference"] (a frozen reference model's state), None without one.

  `feed` (trainer/feed.py) says what a call receives: its `take(batch_k, shared)` (traced) makes one step's
  global batch from its slice of `batch` and from `shared`, what every step of the call reads, and it gives
  both shardings. Without one, `batch` is the global batch itself, split over the batch axes; the step knows
  nothing of epochs or rows."""
  replicated = mesh_lib.replicated(mesh)
  sums_of = sums_of or objective(loss_kind, {}, label_smoothing=label_smoothing)
  if feed is None:
    take, shared_sharding = (lambda batch, shared: batch), replicated
    batch_sharding = mesh_lib.batch_sharding(mesh, leading_axes=int(steps_per_call > 1))
  else:
    take, batch_sharding, shared_sharding = feed.take, feed.batch_shardings(steps_per_call), feed.shared_shardings

  def one_step(state, metrics, batch, reference):
    # Merging hands the state's own Variables to the model, which the update then mutates: keep the
    # incoming values as plain arrays first.
    old_leaves, treedef = jax.tree.flatten(state)
    model, opt = nnx.merge(structure.graphdef, state)
    grads, sums = _loss_and_grads(model, batch, functools.partial(sums_of, reference=reference), accum_steps,
                                  opt.wrt)
    grads = jax.tree.map(lambda g: g / jnp.maximum(sums["weight"], 1.0), grads)
    grad_norm = optax.global_norm(grads)
    opt.update(model, grads)
    # A non-finite loss or gradient never reaches the state: the update is dropped and counted.
    ok = jnp.isfinite(sums["loss_sum"]) & jnp.isfinite(grad_norm)
    new_leaves = jax.tree.leaves(nnx.state((model, opt)))
    new_state = jax.tree.unflatten(treedef, [jnp.where(ok, a, b) for a, b in zip(new_leaves, old_leaves)])
    metrics = {
        **{k: metrics[k] + jnp.where(ok, v, 0.0) for k, v in sums.items()},
        "grad_norm_sum": metrics["grad_norm_sum"] + jnp.where(ok, grad_norm, 0.0),
        "steps": metrics["steps"] + 1.0,
        "nonfinite": metrics["nonfinite"] + (~ok).astype(jnp.float32),
        # Counted from the last reset of the sums: the loop adds the step it reset them at.
        "first_nonfinite_step": jnp.where(ok, metrics["first_nonfinite_step"], jnp.minimum(
            metrics["first_nonfinite_step"], metrics["steps"].astype(jnp.int32) + 1)),
    }
    return new_state, metrics

  def fn(state, metrics, batch, shared):
    reference = shared.get("reference")  # a frozen reference model (trainer/preference.py `reference_state`)
    if steps_per_call == 1:
      return one_step(state, metrics, take(batch, shared), reference)
    # Unrolled (up to 8 steps a loop iteration): XLA:CPU runs the text CNN's backward pass slower inside a
    # rolled scan than called alone (BENCHMARKS.md, 2026-11-29 "What changed, and what each change measured", 2).
    (state, metrics), _ = jax.lax.scan(lambda carry, b: (one_step(*carry, take(b, shared), reference), None),
                                      (state, metrics), batch, unroll=min(steps_per_call, MAX_UNROLL))
    return state, metrics

  treedef = jax.tree.structure(structure.abstract)

  def over_leaves(leaves, metrics, batch, shared):
    with sharding.activation_sharding(mesh, structure.rules):
      state, metrics = fn(jax.tree.unflatten(treedef, leaves), metrics, batch, shared)
    return jax.tree.leaves(state), metrics, metrics["steps"] + 0  # a token of this call's end (not donated)

  # What compile logs and profiles call it.
  over_leaves.__name__ = "train_step" if steps_per_call == 1 else f"train_{steps_per_call}_steps"
  leaf_shardings = jax.tree.leaves(structure.shardings)
  in_shardings = (leaf_shardings, replicated, batch_sharding, shared_sharding)
  return TrainStep(jax.jit(over_leaves, in_shardings=in_shardings,
                           out_shardings=(leaf_shardings, replicated, replicated), donate_argnums=(0, 1)), treedef)


class InFlight:
  """Bounded dispatch (MaxText's `InflightThrottler`): at most `limit` calls queued on the devices; `add`
  waits for the end of the call `limit` back. Unbounded, the loop dispatched a whole logging interval ahead
  and then slept in the device wait, and Python runs a signal handler only when the main thread wakes: a
  SIGTERM to a long-step fine-tune went unanswered for minutes (BENCHMARKS.md, "SIGTERM during long steps").
  With one call queued behind the running one the devices never wait for the host, and a stop lands within
  about two steps."""

  def __init__(self, limit: int):
    self.limit = limit
    self._queue = collections.deque()

  def add(self, done: jax.Array):
    """`done`: an output of the call just dispatched (ready when the call has ended), not a donated one."""
    self._queue.append(done)
    if len(self._queue) > self.limit:
      self._queue.popleft().block_until_ready()


class TrainStep:
  """The jitted step, taking the state as its list of leaves: JAX flattens a list in C++, where an nnx.State's
  Python flatten and unflatten cost a noticeable share of a small model's step (BENCHMARKS.md, "Issue 7:
  performance", 3). The loop carries the leaves and calls `on_leaves`; calling the step itself takes and
  returns a State. Calls are bounded by `in_flight`."""

  MAX_IN_FLIGHT = 2

  def __init__(self, jitted, treedef):
    self.jitted, self.treedef = jitted, treedef
    self.in_flight = InFlight(self.MAX_IN_FLIGHT)

  def on_leaves(self, leaves, metrics, batch, shared):
    leaves, metrics, done = self.jitted(leaves, metrics, batch, shared)
    self.in_flight.add(done)
    return leaves, metrics

  def __call__(self, state, metrics, batch, shared=None):
    leaves, metrics = self.on_leaves(jax.tree.leaves(state), metrics, batch, shared or {})
    return self.treedef.unflatten(leaves), metrics

  def lower(self, state, metrics, batch, shared=None):
    return self.jitted.lower(jax.tree.leaves(state), metrics, batch, shared or {})


def make_eval_step(structure: Structure, mesh: Mesh, *, loss_kind: str, num_classes: int,
                   sums_of: Callable | None = None):
  """`step(state, metrics, batch, reference=None) -> metrics`: metric sums (and a confusion matrix) over real
  examples; `sums_of` and `reference` as make_train_step's."""
  sums_of = sums_of or objective(loss_kind, {}, num_classes=num_classes)

  def eval_step(state, metrics, batch, reference):
    model, _ = nnx.merge(structure.eval_graphdef, state)
    with sharding.activation_sharding(mesh, structure.rules):
      return jax.tree.map(jnp.add, metrics, sums_of(model, batch, reference=reference))

  replicated = mesh_lib.replicated(mesh)
  # The reference (None, or arrays already on their shardings) keeps its own placement.
  jitted = jax.jit(eval_step, in_shardings=(structure.shardings, replicated, mesh_lib.batch_sharding(mesh), None),
                   out_shardings=replicated, donate_argnums=(1,))
  return lambda state, metrics, batch, reference=None: jitted(state, metrics, batch, reference)


def make_predict_step(structure: Structure, mesh: Mesh):
  """`predict(state, inputs) -> probabilities` in eval mode."""

  def predict(state, inputs):
    model, _ = nnx.merge(structure.eval_graphdef, state)
    with sharding.activation_sharding(mesh, structure.rules):
      return jax.nn.softmax(model(inputs).astype(jnp.float32), axis=-1)

  return jax.jit(predict, in_shardings=(structure.shardings, mesh_lib.batch_sharding(mesh)),
                 out_shardings=mesh_lib.replicated(mesh))
