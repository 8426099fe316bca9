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


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_gradient_accumulation_equals_the_big_batch(loss):
  _, mesh, structure, create = _setup(devices=jax.devices()[:1])
  big = steps.make_train_step(structure, mesh, loss_kind=loss)
  accum = steps.make_train_step(structure, mesh, loss_kind=loss, accum_steps=4)
  a, _ = big(create(), steps.train_metrics_init(mesh), _batch())
  b, _ = accum(create(), steps.train_metrics_init(mesh), _batch())
  for x, y in zip(_params(a), _params(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


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
