"""The Python API (flaxforge.train / evaluate / Predictor): a text run trained, evaluated and predicted
from Python; a model given as a factory; dict overrides on the default config; a cheap `import flaxforge`."""
import json
import subprocess
import sys

import jax.numpy as jnp
import pytest
from flax import nnx

import csv_run
from conftest import cli_env
import flaxforge
from flaxforge.core.errors import UserError


class MeanEmbedding(nnx.Module):
  """A user's own model: the mean of the tokens' embeddings, then a linear layer."""

  def __init__(self, vocab_size: int, num_classes: int, *, rngs: nnx.Rngs):
    self.embed = nnx.Embed(vocab_size, 8, rngs=rngs)
    self.out = nnx.Linear(8, num_classes, rngs=rngs)

  def __call__(self, ids):  # int32 [B, L] (0 = padding) -> float32 [B, classes]
    mask = (ids > 0).astype(jnp.float32)[..., None]
    return self.out((self.embed(ids) * mask).sum(1) / jnp.maximum(mask.sum(1), 1.0))


def _factory(cfg, info, rngs):
  del cfg
  return MeanEmbedding(info["vocab_size"], info["num_classes"], rngs=rngs)


@pytest.fixture(scope="module")
def topics(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("api")
  return tmp, csv_run.write_topics(tmp / "topics.csv", n=150, topics=("space", "food", "sport"))


@pytest.fixture(scope="module")
def trained(topics):
  tmp, path = topics
  return tmp, flaxforge.train(csv_run.config(tmp, path), str(tmp / "run"))


@pytest.mark.slow  # a whole training
def test_train_evaluate_predict(trained):
  tmp, results = trained
  evaluated = flaxforge.evaluate(str(tmp / "run"))
  assert evaluated["step"] == 20
  assert evaluated["accuracy"] == results["accuracy"] and evaluated["loss"] == results["loss"]
  predictor = flaxforge.Predictor.from_workdir(str(tmp / "run"))
  assert sorted(predictor.labels) == ["food", "space", "sport"]
  assert predictor.predict(["rocket orbit moon launch", "bread cheese soup cake", "goal match team coach"]) == [
      "space", "food", "sport"]
  assert predictor.probabilities("rocket orbit").shape == (1, 3)


@pytest.mark.slow  # a whole training
def test_an_empty_input_is_refused(trained):
  """One rule for empty inputs (inference/inputs.py), as `flaxforge predict` and the server apply it."""
  predictor = flaxforge.Predictor.from_workdir(str(trained[0] / "run"))
  with pytest.raises(UserError, match=r"^input 1 is a blank text: there is nothing to predict from; remove it$"):
    predictor.predict(["rocket orbit", "   "])
  with pytest.raises(UserError, match=r"^input 0 is a blank text"):
    predictor.top_k("", 1)


@pytest.mark.slow  # a whole training
def test_a_model_factory(topics):
  tmp, path = topics
  workdir = str(tmp / "factory")
  results = flaxforge.train(csv_run.config(tmp, path, **{"train.num_steps": 40}), workdir, model=_factory)
  config = json.loads((tmp / "factory" / "config.json").read_text())
  assert config["model"]["name"] == "test_api:_factory"
  with pytest.raises(UserError, match="given to flaxforge.train as a Python function; pass it again"):
    flaxforge.evaluate(workdir)
  assert flaxforge.evaluate(workdir, model=_factory)["loss"] == results["loss"]
  predictor = flaxforge.Predictor.from_workdir(workdir, model=_factory)
  assert predictor.predict(["rocket orbit moon launch planet star"]) == ["space"]


@pytest.mark.slow  # whole trainings
def test_dict_overrides_and_names(tmp_path):
  flaxforge.train({"train.num_steps": 10, "train.eval_every_steps": 10, "train.progress_bar": False,
                   "model.hidden": (16,)}, str(tmp_path / "d"))
  config = json.loads((tmp_path / "d" / "config.json").read_text())
  assert config["train"]["num_steps"] == 10 and config["model"]["hidden"] == [16]
  with pytest.raises(UserError, match="unknown config field 'train.num_step'"):
    flaxforge.train({"train.num_step": 10}, str(tmp_path / "e"))
  with pytest.raises(UserError, match="shipped configs: .*tiny"):
    flaxforge.train("tnyi", str(tmp_path / "f"))


def test_import_is_cheap():
  code = "import sys, flaxforge; print(sorted(m for m in ('jax', 'flax', 'flaxforge.trainer') if m in sys.modules))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
  assert out.strip() == "[]"


@pytest.mark.slow  # a whole training, subprocesses
def test_the_api_is_quiet_on_stderr(trained):
  """Issue 27, item 10: a script that evaluates a run and predicts with it hears no absl warnings (Orbax's
  "Given directory is read only", TFDS' "Using custom data configuration"); asked for, they come back."""
  tmp, _ = trained
  script = ("import sys, flaxforge; run = sys.argv[1]; flaxforge.evaluate(run); "
            "print(flaxforge.Predictor.from_workdir(run).predict(['rocket orbit moon']))")
  env = cli_env()
  proc = subprocess.run([sys.executable, "-c", script, str(tmp / "run")], capture_output=True, text=True, env=env)
  assert proc.returncode == 0 and proc.stdout.strip() == "['space']", proc.stderr[-3000:]
  assert proc.stderr == ""
  asked = "from absl import logging; logging.set_verbosity(logging.WARNING); " + script
  proc = subprocess.run([sys.executable, "-c", asked, str(tmp / "run")], capture_output=True, text=True, env=env)
  assert "Given directory is read only" in proc.stderr
