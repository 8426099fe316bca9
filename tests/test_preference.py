"""trainer/preference.py against an independent numpy computation and against TRL's formulas as written in
its source (transcribed below in torch, the file and function named at each)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flaxforge.core.errors import UserError
from flaxforge.trainer import preference

B, T, V = 6, 9, 11


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 2, (2 * B, T, V)).astype(np.float32)  # [chosen; rejected], as TRL concatenates
  labels = rng.integers(0, V, (2 * B, T))
  mask = (np.arange(T)[None] >= rng.integers(1, 5, (2 * B, 1))).astype(np.float32)  # completion after a prompt
  mask[:, -rng.integers(0, 3)] = 0  # some padding
  ref = rng.normal(-20, 3, 2 * B).astype(np.float32)
  return logits, labels, mask, ref


def _numpy_logps(logits, labels, mask):
  x = logits.astype(np.float64)
  log_softmax = x - x.max(-1, keepdims=True)
  log_softmax -= np.log(np.exp(log_softmax).sum(-1, keepdims=True))
  picked = np.take_along_axis(log_softmax, labels[..., None], -1)[..., 0]
  return (picked * mask).sum(-1), mask.sum(-1)


def _numpy_losses(objective, pc, pr, nc, nr, rc, rr, beta, gamma):
  sig = lambda z: 1 / (1 + np.exp(-z))
  if objective == "dpo":
    return -np.log(sig(beta * ((pc - rc) - (pr - rr)))), beta * (pc - rc), beta * (pr - rr)
  if objective == "ipo":
    return ((pc - rc) / nc - (pr - rr) / nr - 1 / (2 * beta)) ** 2, beta * (pc - rc), beta * (pr - rr)
  mc, mr = pc / nc, pr / nr
  if objective == "simpo":
    return -np.log(sig(beta * mc - beta * mr - gamma)), beta * mc, beta * mr
  odds = lambda m: np.exp(m) / (1 - np.exp(m))
  return -mc - beta * np.log(sig(np.log(odds(mc) / odds(mr)))), beta * mc, beta * mr


def _ours(batch, objective, beta=0.3, gamma=0.7, pair_mask=None):
  logits, labels, mask, ref = batch
  n = len(logits) // 2
  logps, tokens = preference.sequence_logps(jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(mask))
  return logps, tokens, preference.metric_sums(
      objective, logps[:n], logps[n:], tokens[:n], tokens[n:], jnp.asarray(ref[:n]), jnp.asarray(ref[n:]),
      beta=beta, simpo_gamma=gamma, pair_mask=pair_mask)


def test_sequence_logps_equal_numpy(batch):
  logits, labels, mask, _ = batch
  logps, tokens = preference.sequence_logps(jnp.asarray(logits, jnp.bfloat16).astype(jnp.float32),
                                            jnp.asarray(labels), jnp.asarray(mask))
  want, want_tokens = _numpy_logps(np.asarray(jnp.asarray(logits, jnp.bfloat16).astype(jnp.float32)), labels, mask)
  np.testing.assert_allclose(logps, want, rtol=1e-5)
  np.testing.assert_array_equal(tokens, want_tokens)


@pytest.mark.parametrize("objective", preference.OBJECTIVES)
def test_objectives_equal_numpy(batch, objective):
  logits, labels, mask, ref = batch
  _, _, sums = _ours(batch, objective)
  pc_pr, n = _numpy_logps(logits, labels, mask)
  losses, cr, rr = _numpy_losses(objective, pc_pr[:B], pc_pr[B:], n[:B], n[B:], ref[:B], ref[B:], 0.3, 0.7)
  np.testing.assert_allclose(sums["loss_sum"] / sums["weight"], losses.mean(), rtol=1e-5)
  np.testing.assert_allclose(sums["margin_sum"] / sums["weight"], (cr - rr).mean(), rtol=1e-5, atol=1e-6)
  assert sums["correct"] == (cr > rr).sum()
  np.testing.assert_allclose(sums["chosen_logps_sum"], pc_pr[:B].sum(), rtol=1e-5)
  np.testing.assert_allclose(sums["rejected_logps_sum"], pc_pr[B:].sum(), rtol=1e-5)


def _trl_selective_logps(logits, labels, mask):
  # trl/trainer/dpo_trainer.py `_compute_loss`: per_token_logps = selective_log_softmax(shift_logits,
  # shift_labels); per_token_logps[shift_completion_mask == 0] = 0.0; logps = per_token_logps.sum(dim=1)
  # (selective_log_softmax, trl/trainer/utils.py: log_softmax gathered at the labels). Our logits and
  # labels are already shifted (position t predicts labels[t]).
  per_token = torch.gather(logits.log_softmax(-1), -1, labels.unsqueeze(-1)).squeeze(-1)
  per_token[mask == 0] = 0.0
  return per_token.sum(dim=1)


def test_dpo_and_ipo_equal_trl_dpo_trainer(batch):
  logits, labels, mask, ref = batch
  beta = 0.3
  logps = _trl_selective_logps(torch.tensor(logits), torch.tensor(labels), torch.tensor(mask))
  chosen_logps, rejected_logps = logps.chunk(2, dim=0)  # batch is [chosen, rejected]
  ref_chosen_logps, ref_rejected_logps = torch.tensor(ref).chunk(2, dim=0)
  chosen_logratios = chosen_logps - ref_chosen_logps
  rejected_logratios = rejected_logps - ref_rejected_logps
  delta_score = chosen_logratios - rejected_logratios
  sigmoid = -F.logsigmoid(beta * delta_score)  # loss_type == "sigmoid"
  chosen_mask, rejected_mask = torch.tensor(mask).chunk(2, dim=0)  # loss_type == "ipo"
  ipo_delta = (chosen_logratios / chosen_mask.sum(dim=1).clamp(min=1.0)
               - rejected_logratios / rejected_mask.sum(dim=1).clamp(min=1.0))
  ipo = (ipo_delta - 1 / (2 * beta)) ** 2
  chosen_rewards, rejected_rewards = beta * chosen_logratios, beta * rejected_logratios
  for objective, trl_loss in (("dpo", sigmoid), ("ipo", ipo)):
    _, _, sums = _ours(batch, objective, beta=beta)
    w = float(sums["weight"])
    np.testing.assert_allclose(sums["loss_sum"] / w, trl_loss.mean().item(), rtol=1e-5)
    # the metrics TRL logs: rewards/margins, rewards/accuracies, logps/chosen, logps/rejected
    np.testing.assert_allclose(sums["margin_sum"] / w, (chosen_rewards - rejected_rewards).mean().item(), rtol=1e-5)
    assert float(sums["correct"]) / w == (chosen_rewards > rejected_rewards).float().mean().item()
    np.testing.assert_allclose(sums["chosen_logps_sum"] / w, chosen_logps.mean().item(), rtol=1e-5)
    np.testing.assert_allclose(sums["rejected_logps_sum"] / w, rejected_logps.mean().item(), rtol=1e-5)


def test_simpo_equals_trl_cpo_trainer(batch):
  logits, labels, mask, _ = batch
  beta, simpo_gamma = 2.0, 0.7
  # trl/experimental/cpo/cpo_trainer.py: get_batch_logps(average_log_prob=True) for simpo, then `cpo_loss`
  # with alpha == 0 and label_smoothing == 0.
  per_token = torch.gather(torch.tensor(logits).log_softmax(-1), -1, torch.tensor(labels).unsqueeze(-1)).squeeze(-1)
  loss_mask = torch.tensor(mask)
  avg = (per_token * loss_mask).sum(-1) / loss_mask.sum(-1)
  policy_chosen_logps, policy_rejected_logps = avg[:B], avg[B:]
  cpo_logits = policy_chosen_logps - policy_rejected_logps
  cpo_logits = cpo_logits - simpo_gamma / beta
  losses = -F.logsigmoid(beta * cpo_logits)
  _, _, sums = _ours(batch, "simpo", beta=beta, gamma=simpo_gamma)
  np.testing.assert_allclose(sums["loss_sum"] / sums["weight"], losses.mean().item(), rtol=1e-5)
  np.testing.assert_allclose(sums["chosen_reward_sum"], (beta * policy_chosen_logps).sum().item(), rtol=1e-5)


def test_orpo_odds_ratio_equals_trl_orpo_trainer(batch):
  logits, labels, mask, _ = batch
  beta = 0.1
  per_token = torch.gather(torch.tensor(logits).log_softmax(-1), -1, torch.tensor(labels).unsqueeze(-1)).squeeze(-1)
  loss_mask = torch.tensor(mask)
  avg = (per_token * loss_mask).sum(-1) / loss_mask.sum(-1)
  policy_chosen_logps, policy_rejected_logps = avg[:B], avg[B:]

  def log1mexp(x):  # trl/experimental/orpo/orpo_trainer.py
    t = -0.6931471805599453
    return torch.where(x < t, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))

  # `odds_ratio_loss`; the full loss there is policy_nll_loss - losses.mean(), with its NLL over the chosen
  # rows' prompt and completion; ours is the chosen completion's mean NLL per pair (the paper's L_SFT).
  log_odds = (policy_chosen_logps - policy_rejected_logps) - (
      log1mexp(policy_chosen_logps) - log1mexp(policy_rejected_logps))
  ratio = F.logsigmoid(log_odds)
  trl_loss = -policy_chosen_logps.mean() - (beta * ratio).mean()
  _, _, sums = _ours(batch, "orpo", beta=beta)
  np.testing.assert_allclose(sums["loss_sum"] / sums["weight"], trl_loss.item(), rtol=1e-5)


def test_gradients_reach_the_policy_only():
  pc, pr = jnp.array([-10.0, -12.0]), jnp.array([-11.0, -9.0])
  rc, rr = jnp.array([-10.5, -11.0]), jnp.array([-11.5, -10.0])
  n = jnp.array([5.0, 7.0])
  beta = 0.5

  def loss(pc, pr, rc, rr):
    sums = preference.metric_sums("dpo", pc, pr, n, n, rc, rr, beta=beta)
    return sums["loss_sum"] / sums["weight"]

  grads = jax.grad(loss, argnums=(0, 1, 2, 3))(pc, pr, rc, rr)
  delta = (pc - rc) - (pr - rr)
  want = beta * jax.nn.sigmoid(-beta * delta) / 2  # d/d pc of the mean of -log sigmoid(beta * delta)
  np.testing.assert_allclose(grads[0], -want, rtol=1e-6)
  np.testing.assert_allclose(grads[1], want, rtol=1e-6)
  assert not np.any(grads[2]) and not np.any(grads[3])


def test_pair_mask_leaves_padded_pairs_out(batch):
  _, _, full = _ours(batch, "dpo")
  _, _, masked = _ours(batch, "dpo", pair_mask=jnp.array([1, 1, 1, 0, 0, 0]))
  rows = [0, 1, 2, B, B + 1, B + 2]  # the first three pairs, chosen then rejected
  _, _, want = _ours(tuple(x[rows] for x in batch), "dpo")
  assert float(masked["weight"]) == 3 and float(full["weight"]) == 6
  for key in want:
    np.testing.assert_allclose(masked[key], want[key], rtol=1e-6)


def test_errors():
  x = jnp.zeros(2)
  with pytest.raises(UserError, match="unknown preference objective"):
    preference.pair_losses("kto", x, x, x, x, x, x, beta=0.1)
  with pytest.raises(UserError, match="reference"):
    preference.pair_losses("dpo", x, x, x, x, beta=0.1)
