"""flaxforge.serving: export a trained text classifier, load it without the model code, and predict.

`train_text_run` (used by the other serving and explain tests) trains a tiny classifier on a CSV made here.
"""
import csv
import json
import pathlib
import random
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from flaxforge import serving
from flaxforge.serving import artifact as artifact_lib
from flaxforge.core.errors import UserError
from flaxforge.launch.configs import text_csv
from flaxforge.inference import predict
from flaxforge.trainer import loop

pytestmark = pytest.mark.slow  # a whole training and a subprocess

CUES = {"sports": "goal match team coach league".split(), "cooking": "oven recipe flour bake sauce".split(),
        "travel": "flight hotel beach passport train".split()}
MODELS = {  # tiny versions of every text classifier the trainer makes, and their epochs
    "bag_of_words": ({"embed_dim": 16}, 3),
    "text_cnn": ({"embed_dim": 8, "conv1_filters": 8, "conv1_kernel": 3, "pool": 2, "conv2_filters": 8,
                  "conv2_kernel": 3, "dense": 8}, 12),
    "bert": ({"size": "tiny", "num_layers": 1, "embed_dim": 32, "num_heads": 2, "mlp_dim": 64,
              "position": "learned", "pool": "cls"}, 3),
}
_RUNS = {}


def notes_csv(path: pathlib.Path, n=240) -> pathlib.Path:
  rng = random.Random(0)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["text", "label"])
    for _ in range(n):
      topic = rng.choice(sorted(CUES))
      writer.writerow([" ".join(rng.choices(CUES[topic], k=3) + rng.choices("the a and of to".split(), k=5)), topic])
  return path


def train_text_run(root: pathlib.Path, model: str = "bag_of_words") -> pathlib.Path:
  """A tiny trained classifier's work directory (trained once per process and model family)."""
  if model not in _RUNS:
    c = text_csv.get_config()
    c.data.path = str(notes_csv(root / f"{model}.csv"))
    c.data.data_dir = str(root / "tfds")
    c.data.seq_len, c.data.num_words, c.data.cls_token = 24, 200, model == "bert"
    c.data.batch_size = 32
    c.model.name = model
    c.model.dropout = 0.0
    sizes, c.train.num_epochs = MODELS[model]
    for k, v in sizes.items():
      c.model[k] = v
    c.optimizer.learning_rate = 1e-2
    c.train.log_every, c.train.progress_bar = 100, False
    loop.train(c, str(root / model))
    _RUNS[model] = root / model
  return _RUNS[model]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  return train_text_run(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("export") / "bow"
  serving.export(str(run_dir), str(out))
  return out


TEXTS = ["bake the flour in the oven", "the coach said the team played the match well", "flight to the beach",
         "zyzzyva quixotic", "recipe recipe sauce and the the of"]  # the fourth: no word in the vocabulary

# Runs in a fresh process where importing the model code fails: only jax, numpy, safetensors and the
# preprocessing are available to the loaded artifact.
_BLOCKED_LOAD = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("flax", "optax", "orbax") or name.startswith("flaxforge.models"):
      raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import jax
import numpy as np
from flaxforge import serving
from flaxforge.serving import artifact as artifact_lib
predictor = serving.load(sys.argv[1])
ids = predictor.encode(json.loads(sys.argv[2]))
print(json.dumps({"logits": predictor.logits(ids).tolist(), "labels": predictor.labels,
                  "top": predictor.top_k(json.loads(sys.argv[2]), 2),
                  "modules": sorted(m for m in sys.modules if m.startswith("flaxforge.models") or m.split(".")[0] in ("flax", "orbax"))}))
"""


def test_artifact_reproduces_the_live_model_without_the_model_code(run_dir, exported):
  live = predict.Predictor.from_workdir(str(run_dir))
  expected = live.logits(live.encode(TEXTS))
  proc = subprocess.run([sys.executable, "-c", _BLOCKED_LOAD, str(exported), json.dumps(TEXTS)],
                        capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  got = json.loads(proc.stdout.strip().splitlines()[-1])
  assert not [m for m in got["modules"] if m.startswith("flaxforge.models")] and "flax" not in got["modules"]
  np.testing.assert_allclose(np.array(got["logits"], np.float32), expected, rtol=0, atol=1e-6)
  assert got["labels"] == live.labels == ["cooking", "sports", "travel"]
  assert [t[0][0] for t in got["top"][:3]] == ["cooking", "sports", "travel"]
  assert [[l for l, _ in t] for t in got["top"]] == [[l for l, _ in t] for t in live.top_k(TEXTS, 2)]


def test_one_artifact_serves_any_batch_size(run_dir, exported):
  live = predict.Predictor.from_workdir(str(run_dir), max_batch=64)
  artifact = artifact_lib.Artifact(str(exported))
  rng = np.random.default_rng(0)
  for n in (1, 7, 64):
    ids = rng.integers(0, 200, (n, 24)).astype(np.int32)
    out = np.asarray(artifact.logits(ids))  # exactly n rows: the program's batch dimension is symbolic
    assert out.shape == (n, 3)
    np.testing.assert_allclose(out, live.logits(ids), rtol=0, atol=1e-6)
  manifest = json.loads((exported / "manifest.json").read_text())
  assert manifest["function"]["inputs"] == {"shape": ["batch", 24], "dtype": "int32", "encoding": "text"}
  assert manifest["jax_version"] and manifest["flaxforge_version"] and len(manifest["content_hash"]) == 64
  modes = {p.name: p.stat().st_mode & 0o777 for p in exported.iterdir() if p.is_file()}
  assert len(set(modes.values())) == 1, modes  # the weights as shareable as the rest (safetensors writes 0600)


def test_altered_or_foreign_artifacts_are_refused(run_dir, exported, tmp_path):
  with pytest.raises(UserError, match="manifest.json not found"):
    serving.load(str(tmp_path))
  copy = tmp_path / "copy"
  shutil.copytree(exported, copy)
  labels = copy / "assets" / "labels.json"
  labels.write_text(labels.read_text().replace("cooking", "baking"))
  with pytest.raises(UserError, match="altered after export.*labels.json"):
    serving.load(str(copy))
  with pytest.raises(UserError, match="not an earlier export"):
    serving.export(str(run_dir), str(tmp_path))  # tmp_path holds 'copy', not an export


def loaded_platforms(folder) -> list:
  """The platforms the exported function was lowered for, as jax.export reads them back."""
  return list(jax.export.deserialize(bytearray((folder / artifact_lib.FUNCTION).read_bytes())).platforms)


def test_an_export_for_several_platforms_runs_on_this_one(run_dir, tmp_path):
  """README: `--platforms=cpu,cuda,tpu` lowers one artifact for each; here all three, loaded and run on CPU."""
  serving.export(str(run_dir), str(tmp_path / "multi"), platforms=("cpu", "cuda", "tpu"))
  assert loaded_platforms(tmp_path / "multi") == ["cpu", "cuda", "tpu"]
  live = predict.Predictor.from_workdir(str(run_dir))
  loaded = serving.load(str(tmp_path / "multi"))
  np.testing.assert_allclose(loaded.logits(loaded.encode(TEXTS)), live.logits(live.encode(TEXTS)), rtol=0, atol=1e-6)


def test_a_function_this_jax_cannot_read_is_one_line_naming_export(exported, tmp_path):
  """README: an artifact from a jax.export too new or too old says so and names `flaxforge export`. Stand-in:
  model.jax replaced by bytes jax.export cannot deserialise, the manifest's hashes made to match them."""
  copy = tmp_path / "copy"
  shutil.copytree(exported, copy)
  (copy / artifact_lib.FUNCTION).write_bytes(b"\x00serialized by another jax\x00" * 8)
  manifest = json.loads((copy / artifact_lib.MANIFEST).read_text())
  manifest["files"] = artifact_lib.file_hashes(copy)
  (copy / artifact_lib.MANIFEST).write_text(json.dumps(manifest))
  with pytest.raises(UserError) as e:
    serving.load(str(copy))
  message = str(e.value)
  assert "\n" not in message and f"jax {jax.__version__} cannot load" in message, message
  assert message.endswith("re-export it from its checkpoint with flaxforge export"), message
