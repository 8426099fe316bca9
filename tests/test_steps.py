"""The pure train step: it learns, accumulation equals the big batch, several steps per call equal
single steps, and a non-finite update never reaches the state."""

import jax
import numpy as np
import pytest

from flaxforge.launch.configs import tiny
from flaxforge.trainer import mesh as mesh_lib, state as state_lib, steps


def _setup(mutate=None, devices=None):
  config = tiny.get_config()
  config.model.dropout = 0.0
  if mutate:
    mutate(config)
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  info = {"input_shape": [8, 8], "num_classes": 10}
  structure, create = state_lib.structure(config, info, mesh, total_steps=100)
  return config, mesh, structure, create


def _batch(n=32, seed=0):
  rng = np.random.default_rng(seed)
  b = {"inputs": rng.random((n, 8, 8), np.float32), "label": rng.integers(0, 10, n),
       "mask": np.ones(n, np.float32)}
  return b


def _params(state):
  return [np.asarray(x) for x in jax.tree.leaves(state[0]) if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)]


def test_train_steps_lower_the_loss():
  config, mesh, structure, create = _setup(lambda c: setattr(c.optimizer, "learning_rate", 1e-2))
  step = steps.make_train_step(structure, mesh, loss_kind="cross_entropy")
  eval_step = steps.make_eval_step(structure, mesh, loss_kind="cross_entropy", num_classes=10)
  state, batch = create(), _batch()
  before = eval_step(state, steps.eval_metrics_init(mesh, 10), batch)
  sums = steps.train_metrics_init(mesh)
  for _ in range(30):
    state, sums = step(state, sums, batch)
  after = eval_step(state, steps.eval_metrics_init(mesh, 10), batch)
  assert float(after["loss_sum"]) < 0.5 * float(before["loss_sum"])
  assert float(sums["steps"]) == 30 and float(sums["weight"]) == 30 * 32
  assert float(after["confusion"].sum()) == 32


def _sgd(c):
  c.optimizer.name, c.optimizer.learning_rate = "sgd", 1.0  # one update = minus the gradient


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_gradient_accumulation_equals_the_big_batch(loss):
  """Under SGD at rate 1 the update is the gradient itself, so a wrongly scaled or partial sum shows."""
  _, mesh, structure, create = _setup(_sgd, devices=jax.devices()[:1])
  big = steps.make_train_step(structure, mesh, loss_kind=loss)
  accum = steps.make_train_step(structure, mesh, loss_kind=loss, accum_steps=4)
  start = _params(create())
  a, sums_a = big(create(), steps.train_metrics_init(mesh), _batch())
  b, sums_b = accum(create(), steps.train_metrics_init(mesh), _batch())
  moved = 0
  for x0, x, y in zip(start, _params(a), _params(b)):
    np.testing.assert_allclose(y - x0, x - x0, rtol=1e-4, atol=1e-7)
    moved += int(np.abs(x - x0).max() > 1e-4)
  assert moved >= 2  # the updates compared are real (the kernels at least moved)
  assert float(sums_b["loss_sum"]) == pytest.approx(float(sums_a["loss_sum"]), rel=1e-5)


@pytest.mark.slow  # whole trainings
def test_grad_accum_steps_config_trains_like_the_big_batch(tmp_path, monkeypatch):
  from flaxforge.trainer import loop  # pylint: disable=g-import-not-at-top
  asked, make = [], steps.make_train_step
  monkeypatch.setattr(steps, "make_train_step", lambda *a, **kw: asked.append(kw.get("accum_steps", 1)) or make(*a, **kw))
  results = []
  for k in (1, 4):
    config = tiny.get_config()
    _sgd(config)
    config.optimizer.learning_rate = 0.1
    config.model.dropout, config.train.grad_accum_steps = 0.0, k
    config.train.num_steps = config.train.eval_every_steps = 10
    results.append(loop.train(config, str(tmp_path / str(k)), devices=jax.devices()[:1]))
  assert results[1]["loss"] == pytest.approx(results[0]["loss"], rel=1e-5)
  assert results[1]["accuracy"] == results[0]["accuracy"]
  assert 4 in asked  # the field reached the step (equal results alone would also hold if it were ignored)


def test_several_steps_per_call_equal_single_steps():
  _, mesh, structure, create = _setup()
  single = steps.make_train_step(structure, mesh, loss_kind="cross_entropy")
  multi = steps.make_train_step(structure, mesh, loss_kind="cross_entropy", steps_per_call=3)
  batches = [_batch(seed=i) for i in range(3)]
  a, sa = create(), steps.train_metrics_init(mesh)
  for b in batches:
    a, sa = single(a, sa, b)
  stacked = {k: np.stack([b[k] for b in batches]) for k in batches[0]}
  b_state, sb = multi(create(), steps.train_metrics_init(mesh), stacked)
  for x, y in zip(_params(a), _params(b_state)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
  assert float(sa["loss_sum"]) == pytest.approx(float(sb["loss_sum"]), rel=1e-6)


def test_a_non_finite_update_is_dropped_and_counted():
  _, mesh, structure, create = _setup()
  step = steps.make_train_step(structure, mesh, loss_kind="cross_entropy")
  state = create()
  before = [x.copy() for x in _params(state)]
  bad = _batch()
  bad["inputs"][3, 0, 0] = np.nan
  state, sums = step(state, steps.train_metrics_init(mesh), bad)
  for x, y in zip(before, _params(state)):
    np.testing.assert_array_equal(x, y)
  assert float(sums["nonfinite"]) == 1 and int(sums["first_nonfinite_step"]) == 1
  state, sums = step(state, sums, _batch())
  assert float(sums["nonfinite"]) == 1 and not all(np.array_equal(x, y) for x, y in zip(before, _params(state)))


class _Call:
  """Stands in for a call's end token: records when the throttle waited for it."""

  def __init__(self, index, waited):
    self.index, self.waited = index, waited

  def block_until_ready(self):
    self.waited.append(self.index)
    return self


def test_at_most_two_calls_are_queued_on_the_devices():
  # A stop signal is handled only when the loop's thread wakes, so dispatch must not run far ahead: after
  # dispatching call i, InFlight has waited for every call up to i - 2 (two may still run), and no further.
  waited, in_flight = [], steps.InFlight(2)
  for i in range(6):
    in_flight.add(_Call(i, waited))
    assert waited == list(range(i - 1)), (i, waited)
  # The train step hands each call's end token (its step count, never donated) to its InFlight of 2.
  _, mesh, structure, create = _setup(devices=jax.devices()[:1])
  step = steps.make_train_step(structure, mesh, loss_kind="cross_entropy")
  assert step.in_flight.limit == steps.TrainStep.MAX_IN_FLIGHT == 2
  added = []
  step.in_flight.add = added.append
  leaves, sums = jax.tree.leaves(create()), steps.train_metrics_init(mesh)
  batch = jax.device_put(_batch(), mesh_lib.batch_sharding(mesh))
  for _ in range(3):
    leaves, sums = step.on_leaves(leaves, sums, batch, {})
  assert [float(token) for token in added] == [1.0, 2.0, 3.0]
