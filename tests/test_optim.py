"""trainer/optim.py: learning-rate schedules at given steps, each optimizer's update against its formula,
AdamW's decay mask (matrices decayed, norm scales and biases not) and gradient clipping."""
import jax.numpy as jnp
import numpy as np
import pytest

from flaxforge.core.errors import UserError
from flaxforge.launch.configs import base
from flaxforge.trainer import fields, optim


def _cfg(**values):
  """The optimizer's section as the trainer reads it (typed and checked), with `values` set."""
  cfg = base.get_config().optimizer
  cfg.update(values)
  return fields.Optimizer.read(cfg)


@pytest.mark.parametrize("schedule, warmup, want", [
    ("constant", 0, {0: 1.0, 5: 1.0, 100: 1.0}),
    ("constant", 10, {0: 0.0, 5: 0.5, 10: 1.0, 100: 1.0}),
    # cosine from 1.0 at step 10 to end_lr_factor 0.1 at step 110: halfway (step 60) is 0.55
    ("warmup_cosine", 10, {0: 0.0, 5: 0.5, 10: 1.0, 60: 0.55, 110: 0.1}),
    ("warmup_linear", 10, {0: 0.0, 5: 0.5, 10: 1.0, 60: 0.55, 110: 0.1}),
])
def test_schedule_values(schedule, warmup, want):
  lr = optim.schedule(_cfg(schedule=schedule, learning_rate=1.0, warmup_steps=warmup, end_lr_factor=0.1), 110)
  assert {s: pytest.approx(float(lr(s)), abs=1e-6) for s in want} == want


def test_a_warm_up_as_long_as_the_run_is_warned_about():
  assert optim.warmup_warning(_cfg(warmup_steps=100, learning_rate=1e-4), 101) is None
  assert optim.warmup_warning(_cfg(warmup_steps=0), 10) is None
  said = optim.warmup_warning(_cfg(warmup_steps=100, learning_rate=1e-4), 10)
  assert said == ("warning: optimizer.warmup_steps=100 is not below the run's 10 steps, so the learning rate "
                  "never reaches 0.0001; lower --config.optimizer.warmup_steps")


def test_unknown_schedule_and_optimizer_name_the_fix():
  """The declaration is the one check: a name optim.py has no branch for never reaches it."""
  with pytest.raises(UserError, match="config.optimizer.schedule = 'cosine' is not one of: constant, warmup_cosine"):
    _cfg(schedule="cosine")
  with pytest.raises(UserError, match="config.optimizer.name = 'lion' is not one of: sgd, momentum, adam, adamw"):
    _cfg(name="lion")
  for name in fields.Optimizer.declared()["name"].choices:  # and each declared choice has one
    assert optim.build(_cfg(name=name), 10)
  for schedule in fields.Optimizer.declared()["schedule"].choices:
    assert optim.schedule(_cfg(schedule=schedule, warmup_steps=2), 10)(5) > 0


def _updates(cfg, grads, params, steps=1):
  tx = optim.build(cfg, 100)
  opt_state = tx.init(params)
  for _ in range(steps):
    updates, opt_state = tx.update(grads, opt_state, params)
  return {k: np.asarray(v) for k, v in updates.items()}


PARAMS = {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.full((3,), 2.0), "scale": jnp.full((3,), 2.0)}
GRADS = {"kernel": jnp.full((2, 3), 0.5), "bias": jnp.full((3,), -1.0), "scale": jnp.full((3,), 0.25)}


def test_sgd_and_momentum_follow_their_formulas():
  sgd = _updates(_cfg(name="sgd", learning_rate=0.1), GRADS, PARAMS)
  for k in GRADS:
    np.testing.assert_allclose(sgd[k], -0.1 * np.asarray(GRADS[k]), rtol=1e-6)
  # Heavy ball: the velocity after three equal gradients is g (1 + m + m^2).
  momentum = _updates(_cfg(name="momentum", learning_rate=0.1, momentum=0.9, nesterov=False), GRADS, PARAMS, 3)
  for k in GRADS:
    np.testing.assert_allclose(momentum[k], -0.1 * np.asarray(GRADS[k]) * (1 + 0.9 + 0.81), rtol=1e-6)


def test_adamw_decays_matrices_but_not_biases_or_norm_scales():
  """With zero gradients Adam's part is zero, so the update is the decay alone: -lr * wd * param."""
  zero = {k: jnp.zeros_like(v) for k, v in PARAMS.items()}
  updates = _updates(_cfg(name="adamw", learning_rate=0.1, weight_decay=0.5), zero, PARAMS)
  np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * 2.0, rtol=1e-6)
  np.testing.assert_array_equal(updates["bias"], 0.0)
  np.testing.assert_array_equal(updates["scale"], 0.0)
  # Adam's first step is lr * sign(g) (bias-corrected moments), decay added for matrices only.
  updates = _updates(_cfg(name="adamw", learning_rate=0.1, weight_decay=0.5, eps=1e-12), GRADS, PARAMS)
  np.testing.assert_allclose(updates["kernel"], -0.1 * (1 + 0.5 * 2.0), rtol=1e-5)
  np.testing.assert_allclose(updates["bias"], 0.1, rtol=1e-5)


def test_grad_clip_norm_rescales_to_the_norm():
  norm = float(np.sqrt(sum(float(jnp.sum(g * g)) for g in GRADS.values())))
  clipped = _updates(_cfg(name="sgd", learning_rate=1.0, grad_clip_norm=0.5), GRADS, PARAMS)
  for k in GRADS:
    np.testing.assert_allclose(clipped[k], -np.asarray(GRADS[k]) * 0.5 / norm, rtol=1e-5)
  loose = _updates(_cfg(name="sgd", learning_rate=1.0, grad_clip_norm=10 * norm), GRADS, PARAMS)
  np.testing.assert_allclose(loose["kernel"], -0.5, rtol=1e-6)  # under the limit: untouched
