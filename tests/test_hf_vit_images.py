"""A ViT fine-tuned on an image folder (image_folder.py with model.pretrained, fully and through LoRA): the
pretrained image processor sets the image size and normalisation, the run predicts and serves (an artifact),
and it exports as ViTForImageClassification with its preprocessor_config.json, which transformers'
pipeline("image-classification") runs as it is, giving our labels and probabilities on RGB, greyscale, RGBA
and palette files of any size."""
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported

import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position
import torch  # pylint: disable=wrong-import-position
import transformers  # pylint: disable=wrong-import-position
from PIL import Image  # pylint: disable=wrong-import-position

from flaxforge import serving  # pylint: disable=wrong-import-position
from flaxforge.inference import predict  # pylint: disable=wrong-import-position
from flaxforge.launch.configs import image_folder  # pylint: disable=wrong-import-position
from flaxforge.serving import export_hf  # pylint: disable=wrong-import-position
from flaxforge.trainer import loop  # pylint: disable=wrong-import-position

pytestmark = pytest.mark.slow  # a ViT fine-tuned on an image folder, exported and served

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.3, 0.25]  # not transformers' defaults (0.5): they must come from the file
MODES = ("RGB", "L", "RGBA", "P")


def save_vit(path) -> str:
  """A random 2-layer, 32-wide ViTModel on 16 x 16 images in 4 x 4 patches, and its ViTImageProcessor."""
  torch.manual_seed(0)
  transformers.ViTModel(transformers.ViTConfig(
      hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=16,
      patch_size=4)).save_pretrained(str(path))
  transformers.ViTImageProcessor(size={"height": 16, "width": 16}, image_mean=MEAN, image_std=STD).save_pretrained(
      str(path))
  return str(path)


def image(rng, channel: int, mode: str) -> Image.Image:
  """A random image of 12 to 30 pixels a side, brighter in `channel`, converted to `mode`."""
  pixels = rng.integers(0, 90, (int(rng.integers(12, 31)), int(rng.integers(12, 31)), 3), np.uint8)
  pixels[..., channel] += 150
  return Image.fromarray(pixels).convert(mode)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """(a ViT directory, an image folder of 3 classes x 30 files, 10 other files: every mode, PNG and JPEG)."""
  root = tmp_path_factory.mktemp("vit")
  rng = np.random.default_rng(0)
  for channel, name in enumerate(("red", "green", "blue")):
    (root / "images" / name).mkdir(parents=True)
    for i in range(30):
      image(rng, channel, MODES[i % 4]).save(root / "images" / name / f"{i}.png")
  (root / "new").mkdir()
  new = []
  for i in range(10):
    path = root / "new" / f"{i}.{'jpg' if i == 9 else 'png'}"
    image(rng, i % 3, "RGB" if i == 9 else MODES[i % 4]).save(path)
    new.append(str(path))
  return save_vit(root / "vit"), root, new


@pytest.fixture(scope="module", params=[0, 4], ids=["full", "lora"])
def run(request, folder):
  vit, root, _ = folder
  c = image_folder.get_config()
  c.data.path, c.data.data_dir, c.model.pretrained = str(root / "images"), str(root / "tfds"), vit
  c.data.batch_size, c.model.dropout, c.model.lora.rank = 16, 0.0, request.param
  c.train.num_epochs, c.train.num_steps, c.train.eval_every_steps, c.train.progress_bar = 0, 30, 15, False
  workdir = str(root / f"run{request.param}")
  loop.train(c, workdir)
  return workdir


def test_the_image_processor_sets_the_size_and_normalisation(run):
  with open(os.path.join(run, "info.json"), encoding="utf-8") as f:
    info = json.load(f)
  assert info["input_shape"] == [16, 16, 3]  # not image_folder's 64 x 64
  np.testing.assert_allclose(info["input_scale"], [1 / (255 * s) for s in STD])
  np.testing.assert_allclose(info["input_offset"], [-m / s for m, s in zip(MEAN, STD)])


def test_the_export_runs_in_transformers_pipeline_with_our_labels_and_probabilities(run, folder, tmp_path,
                                                                                     record_property):
  _, _, new = folder
  exported = export_hf.export_workdir(run, str(tmp_path / "hf"))
  out = exported["out"]
  assert "note" not in exported and "preprocessor_config.json" in exported["files"]
  with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
    config = json.load(f)
  assert config["architectures"] == ["ViTForImageClassification"]
  assert config["id2label"] == {"0": "blue", "1": "green", "2": "red"}
  ours = predict.Predictor.from_workdir(run)
  want = ours.probabilities(new)
  classify = transformers.pipeline("image-classification", model=out, top_k=None, device="cpu")
  found = classify(new)
  got = np.array([[{r["label"]: r["score"] for r in row}[name] for name in ours.labels] for row in found])
  record_property("max_abs_probability_difference", float(np.abs(got - want).max()))  # --junitxml keeps it
  assert np.abs(got - want).max() <= 1e-5, np.abs(got - want).max()
  assert len(set(want.argmax(1))) > 1  # the run learned something: not one class for every image


def test_the_run_predicts_and_serves(run, folder, tmp_path):
  _, _, new = folder
  live = predict.Predictor.from_workdir(run)
  serving.export(run, str(tmp_path / "artifact"))
  artifact = serving.load(str(tmp_path / "artifact"))
  assert artifact.labels == live.labels == ["blue", "green", "red"]
  np.testing.assert_allclose(artifact.probabilities(new), live.probabilities(new), atol=1e-5)
