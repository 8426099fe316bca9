"""Text classifiers fine-tuned from Hugging Face models and exported with --format=hf: transformers'
pipeline("text-classification") runs each export as it is and gives our label names and probabilities; each
run also predicts, serves (an artifact) and explains. Tiny random BERT, DistilBERT, RoBERTa, XLM-RoBERTa (a
Unigram tokenizer trained on the Chinese rows it fine-tunes on) and Qwen2, fully and through LoRA; the real
MiniLM with [CLS] + pooler."""
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position
import tokenizers  # pylint: disable=wrong-import-position
import transformers  # pylint: disable=wrong-import-position
from safetensors import safe_open  # pylint: disable=wrong-import-position

import csv_run  # pylint: disable=wrong-import-position
import tiny_hf  # pylint: disable=wrong-import-position
from flaxforge import serving  # pylint: disable=wrong-import-position
from flaxforge.inference import explain, predict  # pylint: disable=wrong-import-position
from flaxforge.serving import export_hf  # pylint: disable=wrong-import-position
from flaxforge.trainer import evaluate, loop  # pylint: disable=wrong-import-position

pytestmark = pytest.mark.slow  # each test fine-tunes, exports and runs transformers

ARCHITECTURES = {"bert": "BertForSequenceClassification", "distilbert": "DistilBertForSequenceClassification",
                 "roberta": "RobertaForSequenceClassification", "xlm-roberta": "XLMRobertaForSequenceClassification",
                 "qwen2": "Qwen2ForSequenceClassification"}
WORDS = " ".join(csv_run.TOPICS.values()).split()


def texts(family) -> list[str]:
  """20 texts to classify: Chinese for XLM-R, else topic words; two run past data.seq_len (16 tokens)."""
  rng = np.random.default_rng(1)
  if family == "xlm-roberta":
    words = tiny_hf.SPORT_ZH + tiny_hf.TECH_ZH
    return ["".join(rng.choice(words, 2 + i % 5)) + ("。" if i % 2 else "") for i in range(18)] + [
        "".join(words) * 2, "足球" * 20]
  return [" ".join(rng.choice(WORDS, 1 + i % 6)) for i in range(18)] + [" ".join(WORDS), "rocket " * 30]


_RUNS = {}


def train(tmp, family, rank) -> tuple[str, str]:
  """(the base model's directory, the run's work directory) of a 30-step fine-tune of `family` on two topics
  (XLM-R: the Chinese rows), LoRA with `rank` > 0; trained once per process."""
  if (family, rank) not in _RUNS:
    if family == "xlm-roberta":
      csv = tiny_hf.write_rows(tmp / "zh.csv", tiny_hf.chinese_rows())
      corpus = [t for t, _ in tiny_hf.chinese_rows()]
    else:
      csv = csv_run.write_topics(tmp / "topics.csv", n=200)
      corpus = list(csv_run.TOPICS.values()) * 20
    base = str(tmp / family)
    if not os.path.isdir(base):
      tiny_hf.save_family(base, family, corpus)
    fields = {"train.num_steps": 30, "model.lora.rank": rank, "model.dropout": 0.0,
              **({"model.name": "gpt"} if family == "qwen2" else {"model.pool": "pooler"})}
    workdir = str(tmp / f"{family}-{rank}")
    loop.train(tiny_hf.config(tmp, base, csv, **fields), workdir)
    _RUNS[family, rank] = base, workdir
  return _RUNS[family, rank]


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
  return tmp_path_factory.mktemp("classifiers")


# Every family fully fine-tuned; LoRA (whose export merges the adapters first, one code path for every family)
# on one encoder and the decoder.
RUNS = [(f, 0) for f in ARCHITECTURES] + [("bert", 4), ("qwen2", 4)]


@pytest.fixture(scope="module", params=RUNS,
                ids=lambda p: f"{p[0]}-{'lora' if p[1] else 'full'}")
def run(request, tmp):
  """(family, the run's work directory)."""
  family, rank = request.param
  return family, train(tmp, family, rank)[1]


def pipeline_probabilities(out, batch, labels) -> np.ndarray:
  """transformers' text-classification pipeline on `batch` (truncated at the tokenizer's model_max_length), as
  [N, classes] in the order of `labels`."""
  classify = transformers.pipeline("text-classification", model=out, top_k=None, device="cpu")
  found = classify(batch, truncation=True)
  assert all(sorted(r["label"] for r in row) == sorted(labels) for row in found), found[0]
  return np.array([[{r["label"]: r["score"] for r in row}[name] for name in labels] for row in found])


def test_the_export_runs_in_transformers_pipeline_with_our_labels_and_probabilities(run, tmp_path, record_property):
  family, workdir = run
  exported = export_hf.export_workdir(workdir, str(tmp_path / "hf"))
  out = exported["out"]
  assert "note" not in exported and exported["files"] == sorted(os.listdir(out)) == [
      "config.json", "flaxforge_export.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
  ours = predict.Predictor.from_workdir(workdir)
  config = json.loads((tmp_path / "hf" / "config.json").read_text(encoding="utf-8"))
  assert config["architectures"] == [ARCHITECTURES[family]]
  assert config["id2label"] == {str(i): name for i, name in enumerate(ours.labels)}
  assert config["problem_type"] == "single_label_classification"
  batch = texts(family)
  want = ours.probabilities(batch)
  assert len(set(want.argmax(1))) == 2  # the run learned something: both classes are predicted
  got = pipeline_probabilities(out, batch, ours.labels)
  record_property("max_abs_probability_difference", float(np.abs(got - want).max()))  # --junitxml keeps it
  assert np.abs(got - want).max() <= 1e-5, np.abs(got - want).max()


def test_each_run_predicts_serves_and_explains(run, tmp_path):
  family, workdir = run
  live = predict.Predictor.from_workdir(workdir)
  batch = texts(family)
  serving.export(workdir, str(tmp_path / "artifact"))
  artifact = serving.load(str(tmp_path / "artifact"))
  assert artifact.labels == live.labels
  np.testing.assert_allclose(artifact.probabilities(batch), live.probabilities(batch), atol=1e-5)
  explainer = explain.Explainer.from_workdir(workdir)
  out = explainer.explain(batch[5])
  ids = explainer.predictor.encode([batch[5]])[0]
  tokenizer = explainer.encoder.tokenizer.tokenizer
  assert [t["token"] for t in out["tokens"]] == [tokenizer.id_to_token(int(i)) for i in ids
                                                  if i != explainer.encoder.pad_id]
  total, gap = sum(t["attribution"] for t in out["tokens"]), out["logit"] - out["baseline_logit"]
  assert abs(gap) > 1e-4 and abs(total - gap) <= 0.05 * abs(gap), (total, gap)


def test_chinese_rows_show_their_characters_in_the_tokenizer_report_and_explanations(tmp, tmp_path):
  base, workdir = train(tmp, "xlm-roberta", 0)
  tokenizer = tokenizers.Tokenizer.from_file(os.path.join(base, "tokenizer.json"))
  text = "球队进球冠军。"
  encoding = tokenizer.encode(text)
  assert tokenizer.token_to_id("<unk>") not in encoding.ids and tokenizer.decode(encoding.ids) == text
  summary = evaluate.evaluate_workdir(workdir, report_dir=str(tmp_path / "report"))
  report = next(p for p in summary["report"] if p.endswith(".json"))
  written = open(report, encoding="utf-8").read()
  assert json.loads(written)["labels"] == ["体育", "科技"] and '"体育"' in written  # characters, not \u escapes
  out = explain.Explainer.from_workdir(workdir).explain(text)
  tokens = [t["token"] for t in out["tokens"]]
  assert out["label"] == "体育" and tokens[0] == "<s>" and tokens[-1] == "</s>"
  assert "".join(tokens[1:-1]).replace("\u2581", "") == text  # SentencePiece's word mark aside: the characters
  exported = export_hf.export_workdir(workdir, str(tmp_path / "hf"))
  config = json.loads(open(os.path.join(exported["out"], "config.json"), encoding="utf-8").read())
  assert config["id2label"] == {"0": "体育", "1": "科技"}
  with safe_open(os.path.join(exported["out"], "model.safetensors"), "numpy") as f:
    assert "roberta.embeddings.position_embeddings.weight" in f.keys()


def test_a_fine_tuned_minilm_with_cls_and_pooler_runs_in_the_pipeline(minilm, tmp_path, record_property):
  """On one device: the export is what is tested here, and 8 fake devices on a 2-core machine make each of
  MiniLM's steps several times slower (BENCHMARKS.md, "2026-12-07: the suite")."""
  topics = csv_run.write_topics(tmp_path / "topics.csv", n=200)
  config = tiny_hf.config(tmp_path, minilm, topics, **{
      "train.num_steps": 10, "model.pool": "pooler", "data.seq_len": 32, "model.dropout": 0.0})
  loop.train(config, str(tmp_path / "run"), devices=jax.devices()[:1])
  out = export_hf.export_workdir(str(tmp_path / "run"), str(tmp_path / "hf"))["out"]
  ours = predict.Predictor.from_workdir(str(tmp_path / "run"))
  batch = texts("bert")
  got, want = pipeline_probabilities(out, batch, ours.labels), ours.probabilities(batch)
  record_property("max_abs_probability_difference", float(np.abs(got - want).max()))
  assert np.abs(got - want).max() <= 1e-5, np.abs(got - want).max()
  with safe_open(os.path.join(out, "model.safetensors"), "numpy") as f, \
       safe_open(os.path.join(minilm, "model.safetensors"), "numpy") as original:
    # the pooler was fine-tuned from MiniLM's own: BertForSequenceClassification computes it
    assert np.abs(f.get_tensor("bert.pooler.dense.weight") - original.get_tensor("pooler.dense.weight")).max() > 0
    assert f.get_tensor("classifier.weight").shape == (2, 384)
