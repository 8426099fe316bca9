"""flaxforge export --format=hf of finetune_lm runs (tiny random GPT-2, Llama, Mistral, Qwen3, Gemma 2 and 3 with
their own tokenizer.json, fine-tuned fully and through LoRA): transformers loads the export with the run's
logits, the run's tokenizer and the base's special token ids come along, `flaxforge generate` continues a
prompt past the sliding window as transformers' generate does, and --out never overwrites what is not an
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

import csv_run  # pylint: disable=wrong-import-position
import tiny_hf  # pylint: disable=wrong-import-position
from conftest import run_module  # pylint: disable=wrong-import-position
from flaxforge.core.errors import UserError  # pylint: disable=wrong-import-position
from flaxforge.inference import sampling  # pylint: disable=wrong-import-position
from flaxforge.launch.configs import finetune_lm  # pylint: disable=wrong-import-position
from flaxforge.serving import export_hf  # pylint: disable=wrong-import-position
from flaxforge.trainer import loop, restore  # pylint: disable=wrong-import-position

pytestmark = pytest.mark.slow  # whole fine-tunes

LINES = [" ".join(t.split()) for t in csv_run.TOPICS.values()] * 40
EXPORTED = ["config.json", "flaxforge_export.json", "model.safetensors", "tokenizer.json"]


FAMILIES = ("mistral", "qwen3", "gemma2", "gemma3")  # besides GPT-2 (full) and Llama (LoRA), both ways
LORA = {"model.lora.rank": 4, "model.lora.targets": "q,kv,out"}  # grouped-query attention: q and kv apart


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """run(family, lora) -> (base directory, run directory): a tiny random base (tiny_hf.save_gpt2, or
  save_decoder), fine-tuned for 4 steps, fully or through LoRA adapters; each trained once per module."""
  tmp = tmp_path_factory.mktemp("lm")
  corpus = tmp / "corpus.txt"
  corpus.write_text("\n".join(LINES))
  made = {}

  def run(family, lora):
    if (family, lora) not in made:
      name = f"{family}_{'lora' if lora else 'full'}"
      base = (tiny_hf.save_gpt2(tmp / family, LINES) if family == "gpt2" else
              tiny_hf.save_decoder(tmp / family, LINES, family)) if not (tmp / family).exists() else str(tmp / family)
      config = tiny_hf.config(tmp, base, corpus, base=finetune_lm, **{
          "data.batch_size": 8, "train.num_steps": 4, "train.eval_every_steps": 4, **(LORA if lora else {})})
      loop.train(config, str(tmp / name))
      made[family, lora] = base, str(tmp / name)
    return made[family, lora]
  return run


def _config(out) -> dict:
  with open(os.path.join(out, "config.json")) as f:
    return json.load(f)


@pytest.mark.parametrize("family,lora,ids", [("gpt2", False, (0, 0)), ("llama", True, (1, 2))] + [
    (family, lora, (1, 2)) for family in FAMILIES for lora in (False, True)])
def test_an_lm_export_holds_the_runs_tokenizer_and_the_bases_special_token_ids(runs, tmp_path, family, lora, ids):
  base, run_dir = runs(family, lora)
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
  base, run_dir = runs("gpt2", False)  # a full fine-tune: its checkpoint does not depend on the base's files
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
  base, run_dir = runs("llama", True)
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


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_continues_a_prompt_as_transformers_generate_does(runs, tmp_path, family):
  # Greedy, past the sliding window (4 positions) from a prompt longer than it: flaxforge's KV cache keeps
  # every position and attention hides those outside a layer's window; transformers' keeps the window only.
  _, run_dir = runs(family, False)
  out = export_hf.export_workdir(run_dir, str(tmp_path / "hf"))["out"]
  theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  theirs.generation_config.eos_token_id = None  # as --nostop_at_eos
  sampler = sampling.Sampler.from_workdir(run_dir)
  prompt, new = "rocket launch orbit moon star", 12
  ids = sampler.encode(prompt)
  assert len(ids) > 4
  with torch.no_grad():
    continued = theirs.generate(torch.tensor([ids]), max_new_tokens=new, do_sample=False)[0, len(ids):].tolist()
  assert len(continued) == new
  generated = run_module("flaxforge.launch.generate", f"--workdir={run_dir}", f"--prompt={prompt}",
                         f"--max_new_tokens={new}", "--temperature=0", "--nostop_at_eos").stdout
  assert generated == sampler.decode(ids + continued) + "\n\n"
