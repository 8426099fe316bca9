"""Continued pretraining or supervised fine-tuning of a pretrained causal LM (Llama/Qwen2/Mistral, GPT-2):

  flaxforge train --config=finetune_lm --workdir=runs/lm --config.model.pretrained=HF_MODEL_DIR \
      --config.data.path=corpus.txt

The corpus (.txt: one document; or .jsonl with a "text" field: one per row) is encoded with the model's own
tokenizer.json, documents joined by its end-of-text id, and cut into windows of seq_len + 1 tokens; a .jsonl
of {"prompt", "completion"} rows is supervised fine-tuning, the loss on the completion only; a .jsonl of
{"messages": [{"role", "content"}, ...]} rows is chat SFT through the model's own chat template, the loss
on the assistant's turns (--config.data.loss_on=all: every token). --config.data.packing=True packs several
SFT examples into each row. The model directory gives the architecture, so gpt_text's size and shape
fields are not part of this config.
"""
from flaxforge.data import fields as data
from flaxforge.launch.configs import base
from flaxforge.models import fields as model


def get_config():
  c = base.get_config(*SECTIONS)
  settings(c)
  return c


SECTIONS = (data.Validation, data.Test, data.Corpus, data.PretrainedTokenizer, data.Chat, data.Packing,
            model.Pretrained, model.TransformerCompute, model.LoRA, model.BaseQuant)


def settings(c):
  """finetune_lm's values, on a config holding its SECTIONS (dpo.py adds its own)."""
  c.malloc = "jemalloc"  # reuses XLA:CPU's large per-step temporaries (launch/allocator.py); else huge pages
  c.data.name = "lm_text"
  c.data.tokenizer = "hf"
  c.data.seq_len = 128
  c.data.test_bytes = 0
  c.data.validation_fraction = 0.05
  c.data.test_fraction = 0.1
  c.data.batch_size = 16
  c.data.eval_batch_size = 16
  c.model.name = "gpt"
  c.model.pretrained = ""
  c.data.tokenizer_path = c.model.get_ref("pretrained") + ""  # one-way: setting it leaves model.pretrained
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 5e-5
  c.optimizer.b2 = 0.95
  c.optimizer.weight_decay = 0.01
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = 20
  c.optimizer.end_lr_factor = 0.1
  c.optimizer.grad_clip_norm = 1.0
  # FSDP: a pretrained model's parameters and optimizer state are sharded over every device, as MaxText does
  # by default (ici_fsdp_parallelism=-1); the batch is split over the same devices.
  c.mesh.data, c.mesh.fsdp = 1, -1
  c.checkpoint.best_metric = "loss"
  c.checkpoint.best_mode = "min"
  c.train.num_epochs = 1
  c.train.log_every = 50
  c.train.eval_every_steps = 500
