"""DPO in the train step (trainer/preference.py `batch_sums`, --config=dpo): the loss, log-probabilities and
reward margin against an independent computation from transformers' logits of the same tiny Llama (the
policy = its LoRA adapters merged and exported; the reference = the base), and a DPO run's metrics with
LoRA and with a full fine-tune."""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import tiny_hf
from flaxforge.launch.configs import dpo
from flaxforge.models import hf, lora
from flaxforge.trainer import loop, preference

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "rockets fly to the moon"] * 10
BETA = 0.3


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
  return tiny_hf.save_llama(tmp_path_factory.mktemp("llama"), TEXTS)


def _batch(vocab, pairs=3, length=12):
  rng = np.random.default_rng(0)
  batch = {"mask": np.array([1.0, 1.0, 0.0])[:pairs]}  # the last pair is padding
  prompt = rng.integers(3, vocab, (pairs, 4))
  for name in ("chosen", "rejected"):
    ids = np.concatenate([prompt, rng.integers(3, vocab, (pairs, length + 1 - 4))], axis=1)
    batch[f"{name}_inputs"], batch[f"{name}_label"] = ids[:, :-1], ids[:, 1:]
    mask = np.zeros((pairs, length), np.float32)
    mask[:, 3:length - rng.integers(0, 3)] = 1.0  # the completion's labels
    batch[f"{name}_loss_mask"] = mask
  return batch


def _logps(model, inputs, labels, mask):
  with torch.no_grad():
    logits = model(torch.tensor(inputs)).logits.double().numpy()
  logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(
      -1, keepdims=True)
  return (np.take_along_axis(logp, labels[..., None], -1)[..., 0] * mask).sum(-1)


def test_dpo_sums_equal_transformers(llama, tmp_path):
  model = hf.load(llama)
  cfg = ml_collections.ConfigDict({"lora": {"rank": 4, "alpha": 8.0, "targets": "qkv,out,up,down"}})
  lora.apply(model, cfg, rngs=nnx.Rngs(1))
  keys = iter(jax.random.split(jax.random.key(2), 100))
  for _, layer in nnx.iter_graph(model):  # adapters that change the function: the policy is not the base
    if isinstance(layer, lora.LoRALinear | lora.LoRALinearGeneral):
      layer.lora_b[...] = 0.3 * jax.random.normal(next(keys), layer.lora_b[...].shape)
  batch = _batch(model.arch.vocab_size)
  options = preference.Options(objective="dpo", beta=BETA)
  sums = jax.jit(lambda m, b: preference.batch_sums(m, b, options=options))(model, jax.tree.map(jnp.asarray, batch))

  hf.export(lora.merged(model), tmp_path / "policy", base=llama)
  policy = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "policy"), torch_dtype=torch.float32)
  reference = transformers.LlamaForCausalLM.from_pretrained(llama, torch_dtype=torch.float32)
  logps = {(who, name): _logps(m, batch[f"{name}_inputs"], batch[f"{name}_label"], batch[f"{name}_loss_mask"])
           for who, m in (("policy", policy), ("reference", reference)) for name in ("chosen", "rejected")}
  chosen_reward = BETA * (logps["policy", "chosen"] - logps["reference", "chosen"])
  rejected_reward = BETA * (logps["policy", "rejected"] - logps["reference", "rejected"])
  losses = np.log1p(np.exp(-(chosen_reward - rejected_reward)))
  real = batch["mask"]
  assert abs(logps["policy", "chosen"] - logps["reference", "chosen"]).max() > 1e-2  # adapters matter
  want = {"loss_sum": losses @ real, "weight": real.sum(), "chosen_logps_sum": logps["policy", "chosen"] @ real,
          "rejected_logps_sum": logps["policy", "rejected"] @ real,
          "margin_sum": (chosen_reward - rejected_reward) @ real, "chosen_reward_sum": chosen_reward @ real,
          "correct": float((chosen_reward > rejected_reward) @ real)}
  for key, value in want.items():
    np.testing.assert_allclose(float(sums[key]), value, rtol=1e-4, atol=1e-4, err_msg=key)


def _pairs(path, n=48):
  rows = [{"prompt": f"the {w}", "chosen": " sat on the mat", "rejected": " ran in the park"}
          for w in ["cat", "dog", "moon", "park", "mat", "rocket"] * (n // 6)]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


@pytest.mark.slow  # a whole training
@pytest.mark.parametrize("rank", [8, 0], ids=["lora", "full"])
def test_a_dpo_run_logs_rewards_and_learns_the_preference(llama, tmp_path, rank):
  """With LoRA the reference is the base with the adapters off; a full fine-tune holds a frozen copy."""
  c = dpo.get_config()
  c.model.pretrained, c.data.path, c.data.seq_len = llama, _pairs(tmp_path / "pairs.jsonl"), 32
  c.model.lora.rank = rank
  c.train.num_steps, c.train.log_every, c.train.eval_every_steps, c.train.progress_bar = 30, 1, 30, False
  c.optimizer.learning_rate, c.optimizer.warmup_steps = 3e-3 if rank else 1e-3, 2
  results = loop.train(c, str(tmp_path / "run"), devices=jax.devices()[:1])
  records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in records if r["split"] == "train"]
  for key in ("loss", "reward_margin", "reward_accuracy", "chosen_logps", "rejected_logps"):
    assert all(np.isfinite(r[key]) for r in train), key
  assert train[0]["loss"] == pytest.approx(np.log(2), abs=1e-6)  # the policy starts as the reference
  assert train[-1]["loss"] < train[0]["loss"] and train[-1]["reward_margin"] > 0
  assert results["reward_accuracy"] > 0.9
