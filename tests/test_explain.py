"""Integrated gradients on the token embeddings: completeness for every text classifier family, and the
attributions of a real 20 Newsgroups model point at the words a person would."""
import jax
import numpy as np
import pytest

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
