"""Fine-tuning a pretrained encoder as a classifier (finetune_text.py): the body is loaded from the Hugging
Face directory, the tokenizer is stored with the run, it learns, it resumes exactly, and 1 and 8 devices
agree."""
import json
import pathlib
import shutil
import signal
import subprocess
import sys

import jax
from flax import nnx
import numpy as np
import pytest
import tokenizers
from safetensors.numpy import load_file

import csv_run
import tiny_hf
from tiny_hf import bert_dir, topics  # noqa: F401  (pytest fixtures)
from conftest import REPO, checkpoint_arrays, cli_env, wait_until
from test_sampling_prefill import greedy
from flaxforge.core.errors import UserError
from flaxforge.data import text
from flaxforge.data.hf_tokenizer import HFTokenizer
from flaxforge.launch.configs import finetune_lm
from flaxforge.inference import predict, sampling
from flaxforge.trainer import loop, mesh as mesh_lib, run_data, state as state_lib, workdir as workdir_lib


def test_new_state_holds_the_pretrained_body_and_a_new_head(tmp_path, bert_dir, topics):
  config = tiny_hf.config(tmp_path, bert_dir, topics)
  data = run_data.load_data(config)
  mesh = mesh_lib.mesh_for(config.mesh)
  _, create = state_lib.structure(config, data.info, mesh, total_steps=10)
  model = dict(jax.tree_util.tree_flatten_with_path(create()[0])[0])
  weights = load_file(f"{bert_dir}/model.safetensors")["embeddings.word_embeddings.weight"]
  embedding = next(v for k, v in model.items() if "embed" in str(k[1]) and "pos" not in str(k[1])
                   and "type" not in str(k[1]))
  np.testing.assert_array_equal(np.asarray(embedding)[:len(weights)], weights)
  assert data.info["pad_id"] == 0 and data.info["seq_len"] == 16


@pytest.mark.slow  # the shared MiniLM
def test_minilm_gives_its_tokenizer_and_body(tmp_path, minilm, topics):
  config = tiny_hf.config(tmp_path, minilm, topics, **{"data.seq_len": 32})
  data = run_data.load_data(config)
  texts = ["Rocket launches to orbit", "bread and cheese"]
  want, _ = HFTokenizer(minilm, 32).encode(texts)
  np.testing.assert_array_equal(text.encoder_from_json(data.assets["text_encoder"]).encode(texts), want)
  state = state_lib.structure(config, data.info, mesh_lib.mesh_for(config.mesh), total_steps=10)[1]()
  weights = load_file(f"{minilm}/model.safetensors")
  name = next(k for k in weights if k.endswith("encoder.layer.5.output.dense.bias"))
  np.testing.assert_array_equal(np.asarray(state[0]["transformer"]["blocks"][5]["mlp"]["down"]["bias"][...]),
                                weights[name])


@pytest.mark.slow  # a whole fine-tune
def test_finetune_learns_and_predict_uses_the_stored_tokenizer(tmp_path, bert_dir, topics):
  """The fine-tune trains (>= 0.9 on csv_run's topics, whose rows are half topic cue words: this shows the
  loop trains the converted model, not that pretrained weights help; their loading is checked above)."""
  config = tiny_hf.config(tmp_path, bert_dir, topics, **{"train.num_steps": 40})
  metrics = loop.train(config, str(tmp_path / "run"))
  assert metrics["accuracy"] >= 0.9, metrics
  stored = workdir_lib.load_asset(workdir_lib.resolve(str(tmp_path / "run")), "text_encoder")
  assert stored["type"] == "hf_tokenizer"
  encoder = text.encoder_from_json(stored)
  ids = encoder.encode(["rocket orbit"])
  assert ids.shape == (1, 16) and ids[0, 0] == 2 and ids[0, 3] == 3 and not ids[0, 4:].any()  # [CLS] .. [SEP] pad
  classifier = predict.Predictor.from_workdir(str(tmp_path / "run"))
  assert [top[0][0] for top in classifier.top_k(["rocket orbit moon star", "bread cheese soup cake"], 1)] == [
      "space", "food"]


def _losses(workdir):
  with open(f"{workdir}/metrics.jsonl") as f:
    return [r["loss"] for r in map(json.loads, f) if r.get("split") == "train"]


def _steps(workdir) -> list[int]:
  d = pathlib.Path(workdir) / "checkpoints"
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


@pytest.mark.slow  # subprocess CLI runs
def test_sigkill_resume_is_bit_exact_and_eight_fsdp_devices_match_one(tmp_path, bert_dir, topics):
  """README: a resumed full fine-tune never reads the pretrained weights again (the killed run's copy of them is
  deleted before it resumes; config.json and tokenizer.json stay, which it does read), and resumes bit-exact;
  8 FSDP devices match one device's losses and weights."""
  run = dict(**{"train.num_steps": 30, "checkpoint.every_steps": 5, "train.log_every": 5})
  base = shutil.copytree(bert_dir, tmp_path / "base")
  cmd = lambda workdir, model: [sys.executable, "-m", "flaxforge.launch.train", f"--workdir={workdir}",
                                *tiny_hf.flags(tmp_path, model, topics, **run)]
  env = cli_env()  # one CPU device, as a user runs it
  train = lambda workdir, model: subprocess.run(cmd(workdir, model), cwd=REPO, env=env, capture_output=True,
                                                text=True)
  whole = train(tmp_path / "whole", bert_dir)
  assert whole.returncode == 0, whole.stderr[-3000:]
  proc = subprocess.Popen(cmd(tmp_path / "killed", base), cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  wait_until(lambda: max(_steps(tmp_path / "killed") or [0]) >= 10, proc, "checkpoint 10")
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL and max(_steps(tmp_path / "killed")) < 30
  weights = sorted(base.glob("*.safetensors"))
  assert weights
  for path in weights:
    path.unlink()
  resumed = train(tmp_path / "killed", base)
  assert "resumed from the checkpoint" in resumed.stdout, resumed.stderr[-3000:]
  (step_a, a), (step_b, b) = checkpoint_arrays(tmp_path / "whole"), checkpoint_arrays(tmp_path / "killed")
  assert step_a == step_b == 30 and len(a) == len(b)
  assert all(x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a, b))
  eight = tiny_hf.config(tmp_path, bert_dir, topics, **run, **{"mesh.fsdp": 8, "mesh.data": 1})
  loop.train(eight, str(tmp_path / "eight"))
  assert len(_losses(tmp_path / "eight")) == 6
  np.testing.assert_allclose(_losses(tmp_path / "eight"), _losses(tmp_path / "whole"), rtol=1e-4)
  step_8, c = checkpoint_arrays(tmp_path / "eight")
  assert step_8 == 30 and len(c) == len(a)
  for x, y in zip(c, a):  # 30 steps of float32 sums in another order: each array within 0.1% of its largest value
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-3 * float(np.abs(y).max()) + 1e-7)


@pytest.mark.slow  # a whole fine-tune and a subprocess CLI run
def test_finetune_lm_continues_pretraining_a_decoder(tmp_path):
  lines = [" ".join(words) for words in (t.split() for t in csv_run.TOPICS.values())] * 40
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("\n".join(lines))
  gpt2_dir = tiny_hf.save_gpt2(tmp_path / "gpt2", lines)
  config = tiny_hf.config(tmp_path, gpt2_dir, corpus, base=finetune_lm, **{
      "data.batch_size": 8, "optimizer.learning_rate": 1e-2, "train.num_steps": 30, "train.log_every": 5,
      "train.eval_every_steps": 30, "checkpoint.best_metric": "loss"})
  data = run_data.load_data(config)
  assert data.info["vocab_size"] == 300 and data.assets["tokenizer"]["type"] == "hf_tokenizer"
  state = state_lib.structure(config, data.info, mesh_lib.mesh_for(config.mesh), total_steps=10)[1]()
  embedding = np.asarray(state[0]["transformer"]["embed"]["embedding"][...])[:300]
  np.testing.assert_array_equal(embedding, load_file(f"{gpt2_dir}/model.safetensors")["transformer.wte.weight"])
  loop.train(config, str(tmp_path / "lm"))
  losses = _losses(tmp_path / "lm")
  assert losses[-1] < 0.5 * losses[0], losses  # a repetitive corpus: the pretrained (random) model learns it
  out = subprocess.run([sys.executable, "-m", "flaxforge.launch.generate", f"--workdir={tmp_path / 'lm'}",
                        "--prompt=rocket", "--max_new_tokens=8", "--temperature=0", "--step=30"], cwd=REPO,
                       env=cli_env(), capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  # The command's greedy continuation is the uncached model's (test_sampling_prefill.greedy), cut at end of text.
  sampler = sampling.Sampler.from_workdir(str(tmp_path / "lm"), step=30)
  prompt = sampler.encode("rocket")
  want = greedy(nnx.merge(sampler.graphdef, sampler.state), prompt, 8, length=len(prompt) + 8)
  want = want[:want.index(sampler.end_id)] if sampler.end_id in want else want
  assert want and out.stdout == sampler.decode(prompt + want) + "\n\n", (out.stdout, want)


@pytest.mark.slow  # a whole fine-tune
def test_a_decoder_classifies_from_its_last_token(tmp_path, topics):
  lines = [" ".join(words) for words in (t.split() for t in csv_run.TOPICS.values())] + ["the a of and to in is it"]
  gpt2_dir = tiny_hf.save_gpt2(tmp_path / "gpt2", lines * 10)
  config = tiny_hf.config(tmp_path, gpt2_dir, topics, **{"model.name": "gpt", "train.num_steps": 40})
  metrics = loop.train(config, str(tmp_path / "run"))
  assert metrics["accuracy"] >= 0.9, metrics
  with pytest.raises(UserError, match=r"holds a classification 'gpt' model; generating text needs a gpt "
                     r"language-model run"):  # the name alone would pass, and sampling would crash
    sampling.Sampler.from_workdir(str(tmp_path / "run"))


@pytest.mark.slow  # a whole fine-tune
def test_prompt_completion_rows_put_the_loss_on_completion_tokens_only(tmp_path):
  topics = list(csv_run.TOPICS)
  rows = [{"prompt": f"topic {t} words", "completion": " " + csv_run.TOPICS[t]} for t in topics] * 30
  corpus = tmp_path / "sft.jsonl"
  corpus.write_text("\n".join(json.dumps(r) for r in rows))
  gpt2_dir = tiny_hf.save_gpt2(tmp_path / "gpt2", [r["prompt"] + r["completion"] for r in rows])
  config = tiny_hf.config(tmp_path, gpt2_dir, corpus, base=finetune_lm, **{
      "data.batch_size": 8, "data.seq_len": 32, "optimizer.learning_rate": 1e-2, "train.num_steps": 30,
      "train.log_every": 5, "train.eval_every_steps": 30, "checkpoint.best_metric": "loss"})
  data = run_data.load_data(config)
  row = data.rows["train"].take(np.arange(1))
  encode = tokenizers.Tokenizer.from_file(f"{gpt2_dir}/tokenizer.json").encode
  prompt, completion = encode(rows[0]["prompt"]).ids, encode(rows[0]["completion"]).ids
  mask = row["loss_mask"][0]
  assert mask.sum() == len(completion) + 1  # the completion and its end-of-text
  assert not mask[:len(prompt) - 1].any() and mask[len(prompt) - 1:len(prompt) + len(completion)].all()
  np.testing.assert_array_equal(row["label"][0][mask > 0], completion + [0])
  loop.train(config, str(tmp_path / "sft"))
  losses = _losses(tmp_path / "sft")
  assert losses[-1] < 0.5 * losses[0], losses


def test_a_sequence_beyond_the_pretrained_positions_is_refused_before_anything_is_written(tmp_path, capfd):
  lines = ["rocket orbit moon launch"] * 20
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("\n".join(lines))
  gpt2_dir = tiny_hf.save_gpt2(tmp_path / "gpt2", lines)  # 32 learned positions
  config = tiny_hf.config(tmp_path, gpt2_dir, corpus, base=finetune_lm, **{"data.seq_len": 64})
  with pytest.raises(UserError, match=r"data.seq_len 64 exceeds the 32 positions of .*gpt2 \(a learned position "
                                      r"table\); pass --config.data.seq_len=32 or less"):
    loop.train(config, str(tmp_path / "lm"))
  written = {p.name for p in (tmp_path / "lm").iterdir()} - {"lease.json"}  # released when the process ends
  assert not written and not list((tmp_path / "tfds").rglob("*array_record*")), written
  llama = tmp_path / "llama"  # rotary positions run past the trained ones: a warning, not a refusal
  llama.mkdir()
  (llama / "config.json").write_text(json.dumps({
      "model_type": "llama", "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
      "intermediate_size": 64, "num_hidden_layers": 2, "vocab_size": 300, "max_position_embeddings": 16}))
  config.model.pretrained = str(llama)
  run_data.check_positions(config)
  assert "warning: data.seq_len 64 exceeds the 16 positions" in capfd.readouterr().err
