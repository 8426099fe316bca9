"""Preference objectives (DPO and its relatives) as pure functions of per-sequence log-probabilities.

A preference pair is a prompt with a `chosen` and a `rejected` completion. The policy's (and, for DPO and
IPO, the frozen reference policy's) log-probability of each completion is the sum of its tokens'
log-probabilities (`sequence_logps`, over the completion's loss mask). From those:

- "dpo": Rafailov et al. 2023, eq. 7: -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))).
- "ipo": Azar et al. 2023, eq. 17, with each log-ratio divided by its completion's tokens as TRL does
  (`trl/trainer/dpo_trainer.py`, loss_type "ipo"): (h - 1 / (2 beta))^2.
- "simpo": Meng et al. 2024, eq. 6, reference-free with length-normalised log-probabilities and a target
  margin gamma: -log sigmoid(beta * pi_c / |y_c| - beta * pi_r / |y_r| - gamma).
- "orpo": Hong et al. 2024, eqs. 4-7, reference-free: the chosen completion's mean per-token negative
  log-likelihood - beta * log sigmoid(log odds_c - log odds_r), odds from mean per-token log-probabilities
  (beta is the paper's lambda, as in TRL). TRL's ORPO takes the NLL over the batch's whole chosen rows,
  prompt included (`trl/experimental/orpo/orpo_trainer.py`); here it is each pair's chosen completion, as
  in the paper.

Rewards (what margin and accuracy are measured on): beta * (pi - ref) for DPO and IPO, beta * pi / tokens
for SimPO and ORPO, as TRL logs them. Reference log-probabilities never receive gradients.
Like trainer/losses.py, metrics are sums over the pairs a mask marks real, so accumulation and padded or
sharded batches stay exact: the caller divides by `weight` once.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from flaxforge.core.errors import UserError
from flaxforge.models import lora
from flaxforge.trainer import fields, state as state_lib

OBJECTIVES = ("dpo", "ipo", "simpo", "orpo")
NEEDS_REFERENCE = ("dpo", "ipo")
SUMS = ("loss_sum", "weight", "margin_sum", "correct", "chosen_logps_sum", "rejected_logps_sum",
        "chosen_reward_sum", "rejected_reward_sum")  # metric_sums' keys
Options = fields.Preference


def sequence_logps(logits, labels, mask):
  """logits [B, T, V] (any float dtype), labels int [B, T] (the token each position predicts), mask [B, T]
  (1 on the completion's label tokens) -> (log-probability float32 [B]: the sum over the mask of
  log softmax(logits)[label], tokens float32 [B]: the mask's sum). Computed in float32."""
  logits = logits.astype(jnp.float32)
  picked = jnp.take_along_axis(logits, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
  mask = mask.astype(jnp.float32)
  return jnp.sum((picked - jax.nn.logsumexp(logits, axis=-1)) * mask, axis=-1), jnp.sum(mask, axis=-1)


def _log1mexp(x):
  """log(1 - exp(x)) for x < 0, stable on both sides of -log 2 (Maechler 2012)."""
  return jnp.where(x < -0.6931471805599453, jnp.log1p(-jnp.exp(x)), jnp.log(-jnp.expm1(x)))


def pair_losses(objective: str, chosen_logps, rejected_logps, chosen_tokens, rejected_tokens,
                ref_chosen_logps=None, ref_rejected_logps=None, *, beta: float, simpo_gamma: float = 0.5):
  """Per-pair losses and rewards, each float32 [B], from `sequence_logps` of the chosen and rejected
  completions (and, for "dpo" and "ipo", of the reference policy). Returns (losses, chosen_rewards,
  rejected_rewards). UserError for an unknown objective, or a reference-based one without reference
  log-probabilities."""
  if objective not in OBJECTIVES:
    raise UserError(f"unknown preference objective {objective!r}; use one of: {', '.join(OBJECTIVES)}")
  chosen_tokens = jnp.maximum(chosen_tokens, 1.0)
  rejected_tokens = jnp.maximum(rejected_tokens, 1.0)
  if objective in NEEDS_REFERENCE:
    if ref_chosen_logps is None or ref_rejected_logps is None:
      raise UserError(f"the {objective} objective compares with a reference policy; give its log-probabilities")
    chosen_ratio = chosen_logps - jax.lax.stop_gradient(ref_chosen_logps)
    rejected_ratio = rejected_logps - jax.lax.stop_gradient(ref_rejected_logps)
    if objective == "dpo":
      losses = -jax.nn.log_sigmoid(beta * (chosen_ratio - rejected_ratio))
    else:
      h = chosen_ratio / chosen_tokens - rejected_ratio / rejected_tokens
      losses = jnp.square(h - 1.0 / (2.0 * beta))
    return losses, beta * chosen_ratio, beta * rejected_ratio
  chosen_mean, rejected_mean = chosen_logps / chosen_tokens, rejected_logps / rejected_tokens
  if objective == "simpo":
    losses = -jax.nn.log_sigmoid(beta * chosen_mean - beta * rejected_mean - simpo_gamma)
  else:  # orpo; a mean log-probability of exactly 0 (no tokens) would make log(1 - p) infinite
    c, r = jnp.minimum(chosen_mean, -1e-6), jnp.minimum(rejected_mean, -1e-6)
    log_odds = (c - r) - (_log1mexp(c) - _log1mexp(r))
    losses = -chosen_mean - beta * jax.nn.log_sigmoid(log_odds)
  return losses, beta * chosen_mean, beta * rejected_mean


def metric_sums(objective: str, chosen_logps, rejected_logps, chosen_tokens, rejected_tokens,
                ref_chosen_logps=None, ref_rejected_logps=None, *, pair_mask=None, beta: float,
                simpo_gamma: float = 0.5) -> dict:
  """Sums over the real pairs (pair_mask [B], default all) of: loss_sum, weight (the pairs), margin_sum
  (chosen reward - rejected reward), correct (pairs whose chosen reward is strictly higher: reward
  accuracy), chosen_logps_sum and rejected_logps_sum (policy), chosen_reward_sum and rejected_reward_sum.
  Divide each by weight for the batch's loss, reward margin, reward accuracy and mean log-probabilities;
  differentiate loss_sum / weight to train."""
  losses, chosen_rewards, rejected_rewards = pair_losses(
      objective, chosen_logps, rejected_logps, chosen_tokens, rejected_tokens, ref_chosen_logps,
      ref_rejected_logps, beta=beta, simpo_gamma=simpo_gamma)
  mask = jnp.ones_like(losses) if pair_mask is None else pair_mask.astype(jnp.float32)
  rewards_c, rewards_r = jax.lax.stop_gradient(chosen_rewards), jax.lax.stop_gradient(rejected_rewards)
  return {
      "loss_sum": jnp.sum(losses * mask),
      "weight": jnp.sum(mask),
      "margin_sum": jnp.sum((rewards_c - rewards_r) * mask),
      "correct": jnp.sum((rewards_c > rewards_r) * mask),
      "chosen_logps_sum": jnp.sum(jax.lax.stop_gradient(chosen_logps) * mask),
      "rejected_logps_sum": jnp.sum(jax.lax.stop_gradient(rejected_logps) * mask),
      "chosen_reward_sum": jnp.sum(rewards_c * mask),
      "rejected_reward_sum": jnp.sum(rewards_r * mask),
  }


def batch_sums(model, batch, *, options: Options, reference=None) -> dict:
  """`metric_sums` of a batch of pairs (data/preference_rows.py: chosen_ and rejected_ inputs, label and
  loss_mask [B, T], and the pair mask [B]): chosen and rejected rows go through the policy in ONE forward
  pass [2B, T]. For DPO and IPO the reference policy's log-probabilities come from a second pass: with
  `reference` (the nnx.State of a frozen copy of the model, `reference_state`) through that copy, else
  through the same model with its LoRA adapters switched off (models/lora.py `adapters_off`): the frozen
  base, so no second copy of the weights is held. UserError for such an objective with neither."""
  both = {k: jnp.concatenate([batch[f"chosen_{k}"], batch[f"rejected_{k}"]]) for k in ("inputs", "label", "loss_mask")}
  logps, tokens = sequence_logps(model(both["inputs"]), both["label"], both["loss_mask"])
  ref = (None, None)
  if options.objective in NEEDS_REFERENCE:
    if reference is not None:
      logits = nnx.merge(nnx.graphdef(model), reference)(both["inputs"])
    elif lora.has_adapters(model):
      with lora.adapters_off(model):
        logits = model(both["inputs"])
    else:
      raise UserError(f"preference.objective={options.objective} compares with a frozen reference model, which "
                      "this run lacks; train LoRA adapters (--config.model.lora.rank=8) or use "
                      "preference.objective=simpo or orpo (no reference)")
    ref = jnp.split(jax.lax.stop_gradient(sequence_logps(logits, both["label"], both["loss_mask"])[0]), 2)
  (chosen, rejected), (chosen_tokens, rejected_tokens) = jnp.split(logps, 2), jnp.split(tokens, 2)
  return metric_sums(options.objective, chosen, rejected, chosen_tokens, rejected_tokens, *ref,
                     pair_mask=batch["mask"], beta=options.beta, simpo_gamma=options.simpo_gamma)


def reference_state(config, info: dict, mesh, factory=None):
  """DPO's and IPO's frozen reference for a full fine-tune: the model's initial state (model.pretrained's
  weights, else the seeded initialisation), a second copy of every weight, sharded like them (float32: 4
  more bytes per parameter beside the parameters, gradients and Adam's two moments, 16). None where it is
  not needed: other data or objectives, and LoRA, whose reference is the base with its adapters off (no
  memory beyond the second forward pass's activations, which no gradient keeps)."""
  if not info.get("preference") or Options.of(config).objective not in NEEDS_REFERENCE or lora.enabled(config.model):
    return None
  _, create = state_lib.structure(config, info, mesh, 1, model=factory)
  return create()[0]
