"""Continue pretraining a Hugging Face causal LM (GPT-2, Llama family) on your corpus:

  flaxforge train --config=finetune_lm --workdir=runs/lm --config.model.pretrained=HF_MODEL_DIR \
      --config.data.path=corpus.txt

The corpus (.txt: one document; or .jsonl with a "text" field: one per row) is encoded with the model's own
tokenizer.json, documents joined by its end-of-text id, and cut into windows of seq_len + 1 tokens; a .jsonl
of {"prompt", "completion"} rows is supervised fine-tuning, the loss on the completion only. The model
directory gives the architecture, so gpt_text's size and shape fields are not part of this config.
"""
import ml_collections

from flaxforge.launch.configs import gpt_text


def get_config():
  c = gpt_text.get_config()
  for name in ("size", "num_layers", "embed_dim", "num_heads", "mlp_dim", "position", "norm", "tie_embeddings"):
    del c.model[name]  # config.json of model.pretrained decides them
  del c.data.separator  # documents are joined by the tokenizer's end-of-text id
  c.data.tokenizer = "hf"
  c.data.seq_len = 128
  c.data.test_bytes = 0
  c.data.validation_fraction = 0.05
  c.model.pretrained = ""
  c.data.tokenizer_path = c.model.get_ref("pretrained") + ""  # one-way: setting it leaves model.pretrained
  c.model.lora = ml_collections.ConfigDict({"rank": 0, "alpha": 16.0, "targets": "qkv,out"})
  c.optimizer.learning_rate = 5e-5
  c.optimizer.weight_decay = 0.01
  c.optimizer.warmup_steps = 20
  c.train.num_steps = 0
  c.train.num_epochs = 1
  return c
