"""Hugging Face checkpoints as they are published: bfloat16 and float16 weights in several shards with
model.safetensors.index.json, tied or untied heads, read and written back tensor for tensor; a sharded
bfloat16 Llama fine-tuned with LoRA and exported to 3 shards; a shard missing from its index refused in one
line before anything is created."""
import json
import os
import shutil
import subprocess
import sys

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported

import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position
import torch  # pylint: disable=wrong-import-position
import transformers  # pylint: disable=wrong-import-position
from flax import nnx  # pylint: disable=wrong-import-position
from safetensors import safe_open  # pylint: disable=wrong-import-position

import csv_run  # pylint: disable=wrong-import-position
import tiny_hf  # pylint: disable=wrong-import-position
from conftest import REPO, cli_env  # pylint: disable=wrong-import-position
from flaxforge.core.errors import UserError  # pylint: disable=wrong-import-position
from flaxforge.launch.configs import finetune_lm  # pylint: disable=wrong-import-position
from flaxforge.models import hf  # pylint: disable=wrong-import-position
from flaxforge.models.hf import layout  # pylint: disable=wrong-import-position
from flaxforge.serving import export_hf  # pylint: disable=wrong-import-position
from flaxforge.trainer import loop, restore  # pylint: disable=wrong-import-position

LINES = [" ".join(t.split()) for t in csv_run.TOPICS.values()] * 40
INDEX = "model.safetensors.index.json"
# max_shard_size that splits the 16-bit tiny Llamas in 3, as transformers and flaxforge order their tensors:
# ~50 KB of weights with a vocabulary of 99, ~75 KB with save_decoder's 300
SHARD, LARGER_SHARD = "20KB", "30KB"


def tensors(folder) -> dict:
  """{name: numpy array} of every tensor of a Hugging Face folder (sharded or not)."""
  checkpoint = layout.Checkpoint(str(folder), "embed_tokens.weight")
  return {name: checkpoint.slice(name)[:] for name in checkpoint.files}


def shard_files(folder) -> list:
  with open(os.path.join(folder, INDEX)) as f:
    return sorted(set(json.load(f)["weight_map"].values()))


def save_half(path, dtype, tie) -> transformers.PreTrainedModel:
  """A random tiny Llama in `dtype`, its weights drawn wide (std 0.2), saved in 3 shards; returns the model."""
  torch.manual_seed(0)
  model = tiny_hf.DECODERS["llama"](vocab_size=99, tie_word_embeddings=tie).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(torch.randn_like(p) * 0.2)
  model = model.to(dtype)
  model.save_pretrained(str(path), safe_serialization=True, max_shard_size=SHARD)
  return model


@pytest.mark.parametrize("dtype,tie", [(torch.bfloat16, False), (torch.bfloat16, True), (torch.float16, False)])
def test_half_precision_shards_load_and_go_back_tensor_for_tensor(tmp_path, dtype, tie):
  model = save_half(tmp_path / "base", dtype, tie)
  assert len(shard_files(tmp_path / "base")) == 3
  ours = hf.load(str(tmp_path / "base"))
  embedding = ours.transformer.embed.embedding.get_value()
  assert embedding.dtype == np.float32
  np.testing.assert_array_equal(embedding[:99], model.model.embed_tokens.weight.detach().float().numpy())
  hf.export(ours, str(tmp_path / "out"), base=str(tmp_path / "base"), max_shard_size=SHARD)
  assert len(shard_files(tmp_path / "out")) == 3
  original, exported = tensors(tmp_path / "base"), tensors(tmp_path / "out")
  assert set(exported) == set(original) and ("lm_head.weight" in exported) != tie
  for name, value in original.items():
    assert exported[name].dtype == value.dtype, name
    np.testing.assert_array_equal(exported[name], value, err_msg=name)
  config = json.loads((tmp_path / "out" / "config.json").read_text())
  assert config["dtype"] == str(dtype).removeprefix("torch.") and config["tie_word_embeddings"] == tie
  ids = torch.tensor(np.random.default_rng(0).integers(1, 99, (2, 12)))
  logits = []
  for folder in ("base", "out"):  # transformers loads both as the same model
    with torch.no_grad():
      loaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / folder), dtype=dtype).eval()
      logits.append(loaded(ids).logits.float().numpy())
  np.testing.assert_array_equal(*logits)


@pytest.mark.slow  # a whole fine-tune
def test_a_sharded_bfloat16_llama_fine_tunes_with_lora_and_exports_to_three_shards(tmp_path):
  base = tiny_hf.save_decoder(tmp_path / "base", LINES, "llama")
  model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16)
  model.save_pretrained(str(tmp_path / "sharded"), max_shard_size=LARGER_SHARD)
  shutil.copy(os.path.join(base, "tokenizer.json"), tmp_path / "sharded")
  assert len(shard_files(tmp_path / "sharded")) == 3
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("\n".join(LINES))
  config = tiny_hf.config(tmp_path, tmp_path / "sharded", corpus, base=finetune_lm, **{
      "data.batch_size": 8, "train.num_steps": 4, "train.eval_every_steps": 4, "model.lora.rank": 4,
      "model.lora.targets": "q,kv,out"})
  loop.train(config, str(tmp_path / "run"))
  exported = export_hf.export_workdir(str(tmp_path / "run"), str(tmp_path / "out"), max_shard_size=LARGER_SHARD)
  assert len(shard_files(tmp_path / "out")) == 3 and INDEX in exported["files"]
  with safe_open(os.path.join(tmp_path, "out", shard_files(tmp_path / "out")[0]), "numpy") as f:
    assert {f.get_slice(name).get_dtype() for name in f.keys()} == {"BF16"}  # the base's dtype
  # in float32 too, where transformers must give the run's logits
  f32 = export_hf.export_workdir(str(tmp_path / "run"), str(tmp_path / "f32"), dtype="float32", max_shard_size="1GB")
  assert INDEX not in f32["files"]
  run = restore.restore(str(tmp_path / "run"))
  ours, _ = nnx.merge(run.structure.eval_graphdef, run.state)
  ids = np.random.default_rng(0).integers(3, 300, (2, 16))
  want = np.asarray(ours(ids))
  for folder, atol in (("f32", 1e-4), ("out", 0.1)):  # bfloat16: its rounding of the merged adapters
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / folder), dtype=torch.float32).eval()
    with torch.no_grad():
      np.testing.assert_allclose(theirs(torch.tensor(ids)).logits.numpy(), want, atol=atol, err_msg=folder)


@pytest.mark.slow  # a subprocess CLI run
def test_a_shard_missing_from_its_index_is_one_line_and_nothing_is_created(tmp_path):
  save_half(tmp_path / "model", torch.bfloat16, False)
  shutil.copy(tiny_hf.save_decoder(tmp_path / "tok", LINES) + "/tokenizer.json", tmp_path / "model")
  missing = shard_files(tmp_path / "model")[1]
  os.remove(tmp_path / "model" / missing)
  index = str(tmp_path / "model" / INDEX)
  with pytest.raises(UserError, match=f"{index} lists the shard {missing}, which is not in"):
    hf.load(str(tmp_path / "model"))
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("\n".join(LINES))
  result = subprocess.run(
      [sys.executable, "-m", "flaxforge.launch.train", "--config=finetune_lm", f"--workdir={tmp_path / 'run'}",
       f"--config.model.pretrained={tmp_path / 'model'}", f"--config.data.path={corpus}",
       f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.train.num_steps=2"],
      cwd=REPO, env=cli_env(), capture_output=True, text=True)
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  assert errors[0] == (f"error: {index} lists the shard {missing}, which is not in {tmp_path / 'model'}; "
                       "download the complete checkpoint"), errors
  assert not (tmp_path / "run").exists() and not (tmp_path / "tfds").exists()
