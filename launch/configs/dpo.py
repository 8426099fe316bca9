"""Preference tuning of a pretrained (usually SFT'd) causal LM with DPO (Rafailov et al. 2023) or a relative
(IPO, SimPO, ORPO: --config.preference.objective), on LoRA adapters:

  flaxforge train --config=dpo --workdir=runs/dpo --config.model.pretrained=HF_MODEL_DIR \
      --config.data.path=pairs.jsonl

pairs.jsonl holds {"prompt", "chosen", "rejected"} rows, plain text or chat (a prompt list of messages).
DPO's reference policy is the frozen base: the same weights with the adapters switched off, so no second
copy is held (a full fine-tune, --config.model.lora.rank=0, holds a frozen copy of the initial weights).
Each train record in metrics.jsonl carries loss, reward_margin, reward_accuracy, and the chosen and
rejected log-probabilities and rewards.
"""
from flaxforge.launch.configs import base, finetune_lm
from flaxforge.trainer import fields as trainer


def get_config():
  c = base.get_config(*finetune_lm.SECTIONS, trainer.Preference)
  finetune_lm.settings(c)
  c.model.lora.rank = 8
  c.model.lora.targets = "qkv,out,up,down"
  c.optimizer.learning_rate = 5e-5
  c.optimizer.warmup_steps = 10
  c.data.batch_size = 8
  c.data.eval_batch_size = 8
  c.data.validation_fraction = 0.1
  c.data.test_fraction = 0.1
  c.preference.objective = "dpo"
  c.preference.beta = 0.1
  return c
