"""Fine-tuning a pretrained encoder as a classifier (finetune_text.py): the body is loaded from the Hugging
Face directory, the tokenizer is stored with the run, it learns, it resumes exactly, and 1 and 8 devices
agree."""
import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

import csv_run
import tiny_hf
from flaxforge.data import text
from flaxforge.trainer import loop, predict, setup, state as state_lib, workdir as workdir_lib


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
  return tiny_hf.save_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def topics(tmp_path_factory):
  return csv_run.write_topics(tmp_path_factory.mktemp("csv") / "topics.csv", n=240)


def test_new_state_holds_the_pretrained_body_and_a_new_head(tmp_path, bert_dir, topics):
  config = tiny_hf.config(tmp_path, bert_dir, topics)
  data = setup.load_data(config)
  mesh = setup.mesh_for(config)
  _, create = state_lib.structure(config, data.info, mesh, total_steps=10)
  model = dict(jax.tree_util.tree_flatten_with_path(create()[0])[0])
  weights = load_file(f"{bert_dir}/model.safetensors")["embeddings.word_embeddings.weight"]
  embedding = next(v for k, v in model.items() if "embed" in str(k[1]) and "pos" not in str(k[1])
                   and "type" not in str(k[1]))
  np.testing.assert_array_equal(np.asarray(embedding)[:len(weights)], weights)
  assert data.info["pad_id"] == 0 and data.info["seq_len"] == 16


def test_finetune_learns_and_predict_uses_the_stored_tokenizer(tmp_path, bert_dir, topics):
  config = tiny_hf.config(tmp_path, bert_dir, topics, **{"train.num_steps": 40})
  metrics = loop.train(config, str(tmp_path / "run"))
  assert metrics["accuracy"] >= 0.9, metrics
  stored = workdir_lib.load_asset(workdir_lib.resolve(str(tmp_path / "run")), "text_encoder")
  assert stored["type"] == "hf_tokenizer"
  encoder = text.encoder_from_json(stored)
  ids = encoder.encode(["rocket orbit"])
  assert ids.shape == (1, 16) and ids[0, 0] == 2 and ids[0, 3] == 3 and not ids[0, 4:].any()  # [CLS] .. [SEP] pad
  classifier = predict.TextClassifier.from_workdir(str(tmp_path / "run"))
  assert [top[0][0] for top in classifier.top_k(["rocket orbit moon star", "bread cheese soup cake"], 1)] == [
      "space", "food"]


def _losses(workdir):
  import json  # pylint: disable=import-outside-toplevel
  with open(f"{workdir}/metrics.jsonl") as f:
    return [r["loss"] for r in map(json.loads, f) if r.get("split") == "train"]


def test_resume_is_exact_and_one_device_matches_eight(tmp_path, bert_dir, topics):
  config = tiny_hf.config(tmp_path, bert_dir, topics, **{"checkpoint.every_steps": 10, "mesh.fsdp": 8,
                                                        "mesh.data": 1})
  loop.train(config, str(tmp_path / "whole"))
  half = tiny_hf.config(tmp_path, bert_dir, topics, **{"train.num_steps": 10, "mesh.fsdp": 8, "mesh.data": 1})
  loop.train(half, str(tmp_path / "resumed"))
  loop.train(config, str(tmp_path / "resumed"))
  from conftest import checkpoint_arrays  # pylint: disable=import-outside-toplevel
  (step_a, a), (step_b, b) = checkpoint_arrays(tmp_path / "whole"), checkpoint_arrays(tmp_path / "resumed")
  assert step_a == step_b == 20 and all(x.tobytes() == y.tobytes() for x, y in zip(a, b))
  one = tiny_hf.config(tmp_path, bert_dir, topics, **{"mesh.fsdp": 1, "mesh.data": 1})
  loop.train(one, str(tmp_path / "one"), devices=jax.devices()[:1])
  np.testing.assert_allclose(_losses(tmp_path / "one"), _losses(tmp_path / "whole"), rtol=1e-4)
