"""Integrated gradients on the token embeddings: completeness for every text classifier family, and the
attributions of a real 20 Newsgroups model point at the words a person would."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import tiny_hf
from tiny_hf import bert_dir, topics  # pylint: disable=unused-import (fixtures)
from flaxforge.inference import explain
from flaxforge.trainer import loop
from test_serving import CUES, train_text_run

pytestmark = pytest.mark.slow  # whole trainings

TEXTS = ["bake the flour in the oven with the sauce", "the coach said the team played the match well",
         "a flight to the beach hotel and the train"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  return tmp_path_factory.mktemp("runs")


@pytest.mark.parametrize("model", ["bag_of_words", "text_cnn", "bert"])
def test_attributions_are_complete_for_every_text_classifier(runs, model):
  explainer = explain.Explainer.from_workdir(str(train_text_run(runs, model)))
  for text in TEXTS:
    out = explainer.explain(text, steps=64)
    live = explainer.predictor.logits(explainer.predictor.encode([text]))[0]
    assert out["label"] == explainer.predictor.labels[int(np.argmax(live))]
    assert out["logit"] == pytest.approx(float(live.max()), abs=1e-4)
    total = sum(t["attribution"] for t in out["tokens"])
    gap = out["logit"] - out["baseline_logit"]
    assert abs(total - gap) <= 0.01 * abs(gap), (model, text, total, gap)
    assert [t["token"] for t in out["tokens"]] == [
        w for w in (["[CLS]"] if model == "bert" else []) + text.split() if w in explainer.encoder.vocab + ["[CLS]"]]
  if model == "bag_of_words":  # order-free: the model embeds sorted ids, matched back to their positions
    out = explainer.explain("flour the oven the recipe", label="cooking")
    top = max(out["tokens"], key=lambda t: t["attribution"])["token"]
    assert top in CUES["cooking"] and out["tokens"][3]["attribution"] == 0.0  # a repeated word counts once


def test_bag_of_words_attributions_equal_integrated_gradients_written_out(runs):
  """Explain's 64-step attributions against an independent computation for the bag of words
  (models/bag_of_words.py): its pooled vector is the sum of each distinct word's embedding row / sqrt(k), so on
  the path from the padding embedding word j's row moves alone, and its attribution is (e_j - e_pad) . the
  mean of d logit / d pooled over 4,096 midpoints / sqrt(k), here by jax.grad of the layers after the pool."""
  explainer = explain.Explainer.from_workdir(str(train_text_run(runs, "bag_of_words")))
  model = nnx.merge(explainer.graphdef, explainer.state)
  text, pad_id = TEXTS[1], explainer.encoder.pad_id
  out = explainer.explain(text, steps=64)
  target = explainer.predictor.labels.index(out["label"])
  words = sorted({int(i) for i in explainer.predictor.encode([text])[0]} - {pad_id})
  table = np.asarray(model.embed.embedding[...], np.float64)
  rows, pad, k = table[words], table[pad_id], len(words)

  def head(pooled):
    h = jax.nn.relu(pooled + model.bias[...])
    h = jax.nn.relu(model.hidden(h)) if model.hidden is not None else h
    return model.out(h)[target]

  alphas = (np.arange(4096) + 0.5) / 4096
  points = (k * pad + alphas[:, None] * (rows - pad).sum(0)) / np.sqrt(k)
  mean_grad = np.asarray(jax.vmap(jax.grad(head))(jnp.asarray(points, jnp.float32)), np.float64).mean(0)
  want = {explainer.encoder.token(w): float((row - pad) @ mean_grad / np.sqrt(k)) for w, row in zip(words, rows)}
  got = {}
  for t in out["tokens"]:  # a repeated word's later occurrences get 0
    got[t["token"]] = got.get(t["token"], 0.0) + t["attribution"]
  gap = out["logit"] - out["baseline_logit"]
  assert got.keys() == want.keys() and abs(gap) > 0.1, (got, want, gap)
  for token, value in want.items():
    assert abs(got[token] - value) <= 2e-3 * abs(gap), (token, got[token], value, gap)


def test_hockey_words_drive_a_real_20_newsgroups_model(bow_20ng_run):
  """The README's bag-of-words model (the session's text_bow_20ng run, conftest.py bow_20ng_run)."""
  explainer = explain.Explainer.from_workdir(str(bow_20ng_run.workdir))
  out = explainer.explain("The hockey playoff game went to overtime before the home team scored.")
  assert out["label"] == "rec.sport.hockey", out
  top = [t["token"] for t in sorted(out["tokens"], key=lambda t: -t["attribution"])[:3]]
  assert {"hockey", "playoff", "overtime"} & set(top), top
  total, gap = sum(t["attribution"] for t in out["tokens"]), out["logit"] - out["baseline_logit"]
  assert abs(total - gap) <= 0.01 * abs(gap)


def test_a_fine_tuned_pretrained_encoder_is_explained_in_its_own_subword_tokens(tmp_path, bert_dir, topics):
  """A run fine-tuned from a Hugging Face BERT encodes with the model's own WordPiece tokenizer: attributions
  are per subword token ([CLS] and [SEP] included), against the baseline of its [PAD] id, and complete."""
  loop.train(tiny_hf.config(tmp_path, bert_dir, topics, **{"train.num_steps": 30}), str(tmp_path / "run"),
             devices=jax.devices()[:1])
  explainer = explain.Explainer.from_workdir(str(tmp_path / "run"))
  text = "the coach said the team played the match well"
  out = explainer.explain(text, steps=64)
  ids = explainer.predictor.encode([text])[0]
  tokenizer = explainer.encoder.tokenizer.tokenizer
  assert [t["token"] for t in out["tokens"]] == [tokenizer.id_to_token(int(i)) for i in ids
                                                  if i != explainer.encoder.pad_id]
  assert out["tokens"][0]["token"] == "[CLS]" and out["tokens"][-1]["token"] == "[SEP]"
  total, gap = sum(t["attribution"] for t in out["tokens"]), out["logit"] - out["baseline_logit"]
  assert abs(gap) > 1e-3 and abs(total - gap) <= 0.01 * abs(gap), (total, gap)
