"""QLoRA (model.base_quant): a LoRA run over an int8 or NF4 frozen base keeps adapter-only checkpoints (the
quantized base is re-derived from model.pretrained), and exports a merged full-precision Hugging Face
directory that transformers loads with our logits to 1e-3. (Its bit-exact resume after SIGKILL is in
test_resume.py.)"""
import json

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

import tiny_hf
from flaxforge.launch.configs import finetune_lm
from flaxforge.models import quant
from flaxforge.serving import export_hf
from flaxforge.trainer import loop, restore

pytestmark = pytest.mark.slow  # whole trainings

CHAT = [[{"role": "user", "content": f"Name {i}?"}, {"role": "assistant", "content": f"Number {i}."}]
        for i in range(40)]


@pytest.mark.parametrize("kind", ["int8", "nf4"])
def test_a_quantized_base_run_saves_adapters_and_exports_a_merged_model(tmp_path, kind):
  model_dir = tiny_hf.save_chat_llama(tmp_path / "model", [m["content"] for c in CHAT for m in c])
  (tmp_path / "chat.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in CHAT))
  c = finetune_lm.get_config()
  c.model.pretrained, c.data.path, c.data.seq_len, c.data.batch_size = model_dir, str(tmp_path / "chat.jsonl"), 32, 4
  c.model.lora.rank, c.model.lora.targets, c.model.base_quant = 4, "qkv,out,up,down", kind
  c.train.num_steps, c.train.eval_every_steps, c.train.progress_bar = 8, 8, False
  c.optimizer.learning_rate, c.optimizer.warmup_steps = 1e-2, 1
  loop.train(c, str(tmp_path / "run"), devices=jax.devices()[:1])

  stored = json.loads((tmp_path / "run" / "checkpoints" / "8" / "state" / "_METADATA").read_text())["tree_metadata"]
  model_keys = [k for k in stored if k.startswith("('0',")]
  assert model_keys and all("lora_" in k or "rngs" in k for k in model_keys), model_keys  # adapters only

  run = restore.restore(str(tmp_path / "run"), model_only=True)
  model, _ = nnx.merge(run.structure.eval_graphdef, run.state)
  layers = [layer for _, layer in nnx.iter_graph(model) if isinstance(layer, quant.QuantizedDense)]
  assert len(layers) == 2 * 6 and {layer.kind for layer in layers} == {kind}  # q, kv, out, gate, up, down per block
  assert all(float(np.abs(np.asarray(layer.lora_b[...])).max()) > 0 for layer in layers if hasattr(layer, "lora_b"))
  tokens = np.random.default_rng(0).integers(3, model.arch.vocab_size, (2, 16))
  ours = np.asarray(model(tokens))

  out = export_hf.export_workdir(str(tmp_path / "run"), str(tmp_path / "hf"))
  assert {"chat_template.jinja", "tokenizer.json"} <= set(out["files"])
  theirs = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "hf"), torch_dtype=torch.float32)
  with torch.no_grad():
    logits = theirs(torch.tensor(tokens)).logits.numpy()
  np.testing.assert_allclose(logits, ours, atol=1e-3, rtol=1e-3)
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
  assert tokenizer.apply_chat_template(CHAT[0], tokenize=False).startswith("<|begin_of_text|><|start_header_id|>user")
