"""flaxforge export --format=hf: a fine-tuned run (LoRA adapters merged) becomes a Hugging Face directory that
`transformers` loads, with the run's tokenizer, computing what the run's body computes."""
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
from flaxforge.models import bert  # pylint: disable=wrong-import-position
from flaxforge.serving import export_hf  # pylint: disable=wrong-import-position
from flaxforge.trainer import loop, restore  # pylint: disable=wrong-import-position

pytestmark = pytest.mark.slow  # whole fine-tunes


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_export_loads_in_transformers_with_equal_hidden_states(tmp_path, lora_rank):
  bert_dir = tiny_hf.save_bert(tmp_path / "bert")
  topics = csv_run.write_topics(tmp_path / "topics.csv", n=120)
  config = tiny_hf.config(tmp_path, bert_dir, topics, **{"train.num_steps": 10, "model.lora.rank": lora_rank})
  loop.train(config, str(tmp_path / "run"))
  exported = export_hf.export_workdir(str(tmp_path / "run"), str(tmp_path / "hf"))
  out = exported["out"]
  assert exported["step"] == 10 and exported["files"] == sorted(os.listdir(out)) == [
      "config.json", "flaxforge_export.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
  # Mean pooling has no transformers classifier: the body is written as the BertModel it is, and one line says so
  assert exported["note"] == ("model.pool='mean' has no transformers classifier: exported the body as BertModel "
                              "without the head; train with --config.model.pool=pooler for one that pipeline() runs")
  texts = ["rocket orbit moon", "bread cheese soup apple rice cake"]
  ids = np.asarray(tokenizers.Tokenizer.from_file(f"{out}/tokenizer.json").encode_batch(texts)[1].ids)[None]
  assert ids.shape == (1, 16) and (ids != 0).sum() == 8  # the run's truncation and padding came along
  modes = {name: os.stat(os.path.join(out, name)).st_mode & 0o777 for name in os.listdir(out)}
  assert len(set(modes.values())) == 1, modes  # the weights as shareable as the rest (safetensors writes 0600)
  theirs, loading = transformers.AutoModel.from_pretrained(out, output_loading_info=True)
  theirs.eval()
  assert not loading["missing_keys"] and not loading["unexpected_keys"], loading  # the base's pooler came along
  with torch.no_grad():
    want = theirs(torch.tensor(ids), attention_mask=torch.tensor(ids != 0)).last_hidden_state.numpy()
  run = restore.restore(str(tmp_path / "run"))
  model, _ = nnx.merge(run.structure.eval_graphdef, run.state)
  got = np.asarray(bert.Encoder.__call__(model, ids))
  real = ids[0] != 0
  np.testing.assert_allclose(got[0, real], want[0, real], atol=1e-4)
  original = transformers.AutoModel.from_pretrained(bert_dir).eval()
  with torch.no_grad():
    before = original(torch.tensor(ids), attention_mask=torch.tensor(ids != 0)).last_hidden_state.numpy()
  torch.testing.assert_close(theirs.pooler.dense.weight, original.pooler.dense.weight, rtol=0, atol=0)
  assert np.abs(before - want).max() > 1e-3  # training changed the body (through the adapters, when LoRA)
