"""Optax optimizers and learning-rate schedules from the optimizer's config section (trainer/fields.py
`Optimizer`, whose declaration lists the names each choice may take)."""
import jax
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


def build(cfg: fields.Optimizer, total_steps: int) -> optax.GradientTransformation:
  lr = schedule(cfg, total_steps)
  optimizers = {
      "sgd": lambda: optax.sgd(lr),
      "momentum": lambda: optax.sgd(lr, momentum=cfg.momentum, nesterov=cfg.nesterov),
      "adam": lambda: optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
      "adamw": lambda: optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                                   mask=_decay_mask),
  }
  tx = optimizers[cfg.name]()
  if cfg.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
  return tx
