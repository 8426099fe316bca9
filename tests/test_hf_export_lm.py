"""flaxforge export --format=hf of finetune_lm runs (tiny random GPT-2 and Llama with their own tokenizer.json):
the run's tokenizer and the base's special token ids come along, and --out never overwrites what is not an
earlier export (the run itself, its LoRA base, another model's folder)."""
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported

import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position
import tokenizers  # pylint: disable=wrong-import-position
import torch  # pylint: disable=wrong-import-position
import transformers  # pylint: disable=wrong-import-position
from flax import nnx  # pylint: disable=wrong-import-position
from tokenizers import models, pre_tokenizers, processors  # pylint: disable=wrong-import-position

import csv_run  # pylint: disable=wrong-import-position
import tiny_hf  # pylint: disable=wrong-import-position
from flaxforge.core.errors import UserError  # pylint: disable=wrong-import-position
from flaxforge.launch.configs import finetune_lm  # pylint: disable=wrong-import-position
from flaxforge.serving import export_hf  # pylint: disable=wrong-import-position
from flaxforge.trainer import loop, restore  # pylint: disable=wrong-import-position

LINES = [" ".join(t.split()) for t in csv_run.TOPICS.values()] * 40
EXPORTED = ["config.json", "flaxforge_export.json", "model.safetensors", "tokenizer.json"]


def save_llama(path, texts) -> str:
  """A random 2-layer, 32-wide Llama (bos 1, eos 2) and a byte-level BPE tokenizer.json that starts every
  text with <s>, as Llama's does, in `path`."""
  tok = tokenizers.Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  tok.train_from_iterator(texts, tokenizers.trainers.BpeTrainer(
      vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
  torch.manual_seed(0)
  model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
      vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32, bos_token_id=1, eos_token_id=2))
  model.save_pretrained(str(path), safe_serialization=True)
  tok.save(os.path.join(str(path), "tokenizer.json"))
  return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{family: (base directory, run directory)}: GPT-2 fully fine-tuned, Llama through LoRA adapters."""
  tmp = tmp_path_factory.mktemp("lm")
  corpus = tmp / "corpus.txt"
  corpus.write_text("\n".join(LINES))
  found = {}
  for family, save, lora in (("gpt2", tiny_hf.save_gpt2, {}), ("llama", save_llama, {
      "model.lora.rank": 4, "model.lora.targets": "q,kv,out"})):  # grouped-query attention: q and kv apart
    base = save(tmp / family, LINES)
    config = tiny_hf.config(tmp, base, corpus, base=finetune_lm, **{
        "data.batch_size": 8, "train.num_steps": 4, "train.eval_every_steps": 4, **lora})
    loop.train(config, str(tmp / f"{family}_run"))
    found[family] = base, str(tmp / f"{family}_run")
  return found


def _config(out) -> dict:
  with open(os.path.join(out, "config.json")) as f:
    return json.load(f)


@pytest.mark.parametrize("family,ids", [("gpt2", (0, 0)), ("llama", (1, 2))])
def test_an_lm_export_holds_the_runs_tokenizer_and_the_bases_special_token_ids(runs, tmp_path, family, ids):
  base, run_dir = runs[family]
  exported = export_hf.export_workdir(run_dir, str(tmp_path / "hf"))
  out = exported["out"]
  assert exported["files"] == sorted(os.listdir(out)) == EXPORTED
  # The tokenizer encodes whole texts as the base's does (no truncation or padding to data.seq_len).
  text = " ".join(LINES[:6])
  want = tokenizers.Tokenizer.from_file(os.path.join(base, "tokenizer.json")).encode(text).ids
  assert tokenizers.Tokenizer.from_file(os.path.join(out, "tokenizer.json")).encode(text).ids == want
  assert len(want) > 16  # longer than data.seq_len: truncation would show
  assert (_config(out)["bos_token_id"], _config(out)["eos_token_id"]) == ids
  assert json.loads((tmp_path / "hf" / "flaxforge_export.json").read_text()) == {"workdir": run_dir, "step": 4}
  theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  assert (theirs.generation_config.bos_token_id, theirs.generation_config.eos_token_id) == ids
  run = restore.restore(run_dir)
  model, _ = nnx.merge(run.structure.eval_graphdef, run.state)
  tokens = np.asarray(want[:16])[None]
  with torch.no_grad():
    expected = theirs(torch.tensor(tokens)).logits.numpy()
  np.testing.assert_allclose(np.asarray(model(tokens)), expected, atol=1e-4)


def test_ids_that_the_bases_config_does_not_name_come_from_the_runs_tokenizer(runs, tmp_path):
  base, run_dir = runs["gpt2"]  # a full fine-tune: its checkpoint does not depend on the base's files
  path = os.path.join(base, "config.json")
  original = open(path).read()
  config = json.loads(original)
  for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
    config.pop(key, None)
  open(path, "w").write(json.dumps(config))
  try:
    out = export_hf.export_workdir(run_dir, str(tmp_path / "hf"))["out"]
  finally:
    open(path, "w").write(original)
  config = _config(out)
  # <|endoftext|> (id 0), not transformers' default 50256: the tokenizer's padding, which finetune_lm joined
  # documents with
  assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (0, 0, 0)


def _contents(folder) -> dict:
  return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))
          if os.path.isfile(os.path.join(folder, name))}


def test_export_refuses_what_is_not_an_earlier_export_and_replaces_an_earlier_one(runs, tmp_path):
  base, run_dir = runs["llama"]
  foreign = tmp_path / "model"
  foreign.mkdir()
  (foreign / "config.json").write_text("{}")
  (foreign / "NOTES.md").write_text("mine")
  for out in (run_dir, str(foreign)):
    before = _contents(out)
    with pytest.raises(UserError, match="not an earlier export"):
      export_hf.export_workdir(run_dir, out)
    assert _contents(out) == before, out
  marker = os.path.join(base, "flaxforge_export.json")
  for base_is_an_earlier_export in (False, True):  # the LoRA base stays, even when it was exported itself
    if base_is_an_earlier_export:
      open(marker, "w").write("{}")
    try:
      before = _contents(base)
      with pytest.raises(UserError, match="is the run's base model"):
        export_hf.export_workdir(run_dir, base)
      assert _contents(base) == before
    finally:
      if base_is_an_earlier_export:
        os.remove(marker)
  out = tmp_path / "hf"
  export_hf.export_workdir(run_dir, str(out))
  for stale in ("generation_config.json", "NOTES.md"):
    (out / stale).write_text("{}")
  exported = export_hf.export_workdir(run_dir, str(out))
  assert exported["files"] == sorted(os.listdir(out)) == EXPORTED
