"""Optax optimizers and learning-rate schedules from the optimizer's config section (trainer/fields.py
`Optimizer`, whose declaration lists the names each choice may take).

The optimizer works in float32 whatever the parameters' dtype (model.param_dtype): its state is float32 but
the first moment, which optimizer.mu_dtype may make bfloat16 (optax's mu_dtype; the second moment has no such
option in optax, and bfloat16 could not hold it: a decay of b2 = 0.999 changes a value by less than half of
bfloat16's precision, so it would never decay). Updates are applied in float32 and rounded to each
parameter's dtype (optax.apply_updates).
"""
import jax
import jax.numpy as jnp
import optax

from flaxforge.trainer import fields


def schedule(cfg: fields.Optimizer, total_steps: int) -> optax.Schedule:
  lr, warmup = cfg.learning_rate, cfg.warmup_steps
  if cfg.schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1),
                                              end_value=lr * cfg.end_lr_factor)
  if cfg.schedule == "warmup_linear":
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup),
                                 optax.linear_schedule(lr, lr * cfg.end_lr_factor, max(total_steps - warmup, 1))],
                                [warmup])
  return optax.constant_schedule(lr) if not warmup else optax.join_schedules(  # "constant"
      [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])


def warmup_warning(cfg: fields.Optimizer, total_steps: int) -> str | None:
  """A warning when the warm-up lasts the whole run, so the rate never reaches cfg.learning_rate; else None."""
  if cfg.warmup_steps and cfg.warmup_steps >= total_steps:
    return (f"warning: optimizer.warmup_steps={cfg.warmup_steps} is not below the run's {total_steps} steps, so "
            f"the learning rate never reaches {cfg.learning_rate}; lower --config.optimizer.warmup_steps")
  return None


def _decay_mask(params):
  """Weight decay on matrices only: norms' scales and biases are left alone."""
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def _in_float32(tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """`tx` given float32 copies of the parameters and gradients (a no-op for float32 ones), so its state and
  its updates are float32 (or the dtype it asks for, e.g. mu_dtype) for 16-bit parameters too; the state's
  structure is `tx`'s own."""
  tx = optax.with_extra_args_support(tx)
  up = lambda tree: jax.tree.map(lambda x: x.astype(jnp.promote_types(x.dtype, jnp.float32)), tree)

  def update(updates, state, params=None, **extra_args):
    return tx.update(up(updates), state, None if params is None else up(params), **extra_args)
  return optax.GradientTransformationExtraArgs(lambda params: tx.init(up(params)), update)


def build(cfg: fields.Optimizer, total_steps: int) -> optax.GradientTransformation:
  lr, mu_dtype = schedule(cfg, total_steps), jnp.dtype(cfg.mu_dtype)
  optimizers = {
      "sgd": lambda: optax.sgd(lr),
      "momentum": lambda: optax.sgd(lr, momentum=cfg.momentum, nesterov=cfg.nesterov, accumulator_dtype=mu_dtype),
      "adam": lambda: optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, mu_dtype=mu_dtype),
      "adamw": lambda: optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                                   mask=_decay_mask, mu_dtype=mu_dtype),
  }
  tx = optimizers[cfg.name]()
  if cfg.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
  return _in_float32(tx)
