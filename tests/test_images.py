"""Images: a class-per-folder dataset of PNG/JPEG files of different sizes (decoded, resized, normalised,
augmented for training only) trained with the ConvNet; Fashion-MNIST's IDX reader and builder on small
files made here, and once on the shared real files."""
import base64
import gzip
import json
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from fastapi import testclient
from PIL import Image

from flaxforge.core.errors import UserError
from flaxforge.data import fashion_mnist, image_folder, preprocess
from flaxforge.launch.configs import image_folder as image_folder_config
from flaxforge.serving import server
from flaxforge.inference import predict
from flaxforge.trainer import loop
from conftest import REPO, checkpoint_arrays, cli_env, run_module, wait_until

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 40, 230)}


def make_folder(root, per_class=20):
  """Three classes told apart by colour, images of random sizes (PNG, and JPEG for one class), with noise."""
  rng = np.random.default_rng(0)
  for name, color in COLORS.items():
    (root / name).mkdir(parents=True)
    for i in range(per_class):
      h, w = rng.integers(12, 48, 2)
      pixels = np.clip(np.asarray(color) + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
      suffix = ".jpg" if name == "blue" else ".png"
      Image.fromarray(pixels).save(root / name / f"{i}{suffix}")
  (root / "red" / "notes.txt").write_text("not an image")
  return root


def cfg(tmp_path, **overrides):
  return {"path": str(tmp_path / "photos"), "data_dir": str(tmp_path / "tfds"), "image_size": (16, 16),
          **overrides}


def test_folder_images_of_any_size_are_resized_split_and_normalised(tmp_path, capfd):
  make_folder(tmp_path / "photos")
  ds = image_folder.load(cfg(tmp_path, normalize="standardize"))
  assert "Downloading" not in capfd.readouterr().out  # no TFDS download message for a local folder
  assert ds.info["label_names"] == ["blue", "green", "red"] and ds.assets["labels"] == ["blue", "green", "red"]
  assert ds.info["input_shape"] == [16, 16, 3] and {k: len(v) for k, v in ds.splits.items()} == {
      "train": 48, "validation": 6, "test": 6}  # 10% + 10% of each class held out
  train = np.stack([ds.splits["train"][i]["inputs"] for i in range(48)])
  labels = np.array([ds.splits["train"][i]["label"] for i in range(48)])
  assert train.dtype == np.uint8
  assert (train[labels == 2][..., 0].mean() > 180) and (train[labels == 0][..., 2].mean() > 180)  # red, blue
  normalised = preprocess.make_transform(ds.info)({"inputs": train, "label": labels})["inputs"]
  np.testing.assert_allclose(normalised.reshape(-1, 3).mean(0), 0, atol=1e-4)  # standardised on train
  np.testing.assert_allclose(normalised.reshape(-1, 3).std(0), 1, atol=1e-3)
  grey = image_folder.load(cfg(tmp_path, color="grey", normalize="symmetric"))
  assert grey.info["input_shape"] == [16, 16, 1] and grey.info["input_offset"] == [-1.0]


def test_a_bad_image_or_folder_is_one_line(tmp_path):
  make_folder(tmp_path / "photos", per_class=5)
  (tmp_path / "photos" / "red" / "broken.png").write_bytes(b"not a png")
  with pytest.raises(UserError, match=r"broken.png: not a readable image"):
    image_folder.load(cfg(tmp_path))
  (tmp_path / "flat").mkdir()
  with pytest.raises(UserError, match=r"one subfolder per class"):
    image_folder.load(cfg(tmp_path, path=str(tmp_path / "flat")))


def test_augmentation_crops_and_flips_training_batches_only(tmp_path):
  images = np.arange(2 * 4 * 4 * 1, dtype=np.uint8).reshape(2, 4, 4, 1) * 7
  info = {"input_scale": [1.0], "input_offset": [0.0], "augment": {"crop_padding": 1, "flip": True}}
  train = preprocess.make_transform(info, train=True, seed=3)
  outs = [train({"inputs": images.copy()})["inputs"] for _ in range(2)]
  np.testing.assert_array_equal(outs[0], outs[1])  # a function of seed and batch: the same after a resume
  assert outs[0].shape == images.shape and not np.array_equal(outs[0], images)
  views = set()
  for seed in range(20):
    out = preprocess.make_transform(info, train=True, seed=seed)({"inputs": images.copy()})["inputs"]
    views.add(out[0].tobytes())
  assert len(views) > 5  # crops and flips vary
  flipped = preprocess.augment(images, {"flip": True}, seed=0)
  assert all(np.array_equal(f, i) or np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, images))
  evaluation = preprocess.make_transform(info)({"inputs": images.copy()})["inputs"]
  np.testing.assert_array_equal(evaluation, images.astype(np.float32))  # eval batches are not augmented


@pytest.mark.slow  # subprocess CLI runs
def test_the_convnet_learns_a_folder_of_pngs(tmp_path):
  make_folder(tmp_path / "photos")
  config = image_folder_config.get_config()
  config.data.update(path=str(tmp_path / "photos"), data_dir=str(tmp_path / "tfds"), image_size=(16, 16),
                     batch_size=16)
  config.model.update(channels=(8, 16), dense=16, dropout=0.0)
  config.train.update(num_steps=30, eval_every_steps=30, log_every=10, progress_bar=False)
  config.optimizer.learning_rate = 3e-3
  results = loop.train(config, str(tmp_path / "run"), devices=jax.devices()[:1])
  assert results["accuracy"] == 1.0  # colours: trivially separable once it trains
  info = json.loads((tmp_path / "run" / "info.json").read_text())
  assert info["augment"] == {"crop_padding": 4, "flip": True}

  # Predict from image files (paths or bytes), decoded, resized and normalised as the run stored it.
  predictor = predict.Predictor.from_workdir(str(tmp_path / "run"))
  files = [tmp_path / "photos" / name / ("3.jpg" if name == "blue" else "3.png") for name in COLORS]
  assert predictor.modality.name == "image" and predictor.predict([str(f) for f in files]) == list(COLORS)
  assert predictor.predict(files[1].read_bytes()) == predictor.predict(files[1]) == ["green"]  # bytes, a Path
  with pytest.raises(UserError, match=r"image 0: not a readable image"):
    predictor.predict(b"not an image")
  # The command takes a folder (one JSON line per image file in it) ...
  out = run_module("flaxforge.launch.predict", f"--workdir={tmp_path / 'run'}", f"--input={tmp_path / 'photos' / 'blue'}",
                   "--json", "--top_k=2")
  lines = [json.loads(line) for line in out.stdout.splitlines()]
  assert len(lines) == 20 and all(l["top"][0]["label"] == "blue" and len(l["top"]) == 2 for l in lines), lines[:2]
  # ... and the server base64 strings of the files.
  app = server.make_app(predictor=predictor, limits=server.Limits(max_texts=4))
  with testclient.TestClient(app) as client:
    answer = client.post("/v1/predict", json={"images": [base64.b64encode(f.read_bytes()).decode() for f in files],
                                              "top_k": 1})
    assert [p["top"][0]["label"] for p in answer.json()["predictions"]] == list(COLORS), answer.text
    bad = client.post("/v1/predict", json={"images": ["%%%"]})
    assert bad.status_code == 400 and "base64" in bad.json()["error"]["message"]
    assert client.post("/v1/predict", json={"texts": ["a"]}).status_code == 400  # an image run takes images


def _steps(workdir) -> list[int]:
  folder = workdir / "checkpoints"
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []


@pytest.mark.slow  # subprocess CLI runs
def test_an_augmented_run_killed_and_resumed_equals_an_uninterrupted_one(tmp_path):
  """README: the augmentation (random crop and flip) is a function of data.seed and the batch, so a run
  SIGKILLed after a checkpoint and resumed sees the same batches: its final state is bit-identical."""
  make_folder(tmp_path / "photos")
  flags = ["--config=launch/configs/image_folder.py", f"--config.data.path={tmp_path / 'photos'}",
           f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.data.image_size=(16,16)",
           "--config.data.batch_size=16", "--config.model.channels=(8,16)", "--config.model.dense=16",
           "--config.train.num_steps=200", "--config.checkpoint.every_steps=10", "--config.train.log_every=10",
           "--config.train.eval_every_steps=200", "--config.train.progress_bar=false"]
  cmd = lambda workdir: [sys.executable, "-m", "flaxforge.launch.train", f"--workdir={workdir}", *flags]
  whole = subprocess.run(cmd(tmp_path / "whole"), cwd=REPO, env=cli_env(), capture_output=True, text=True)
  assert whole.returncode == 0, whole.stderr[-3000:]
  assert json.loads((tmp_path / "whole" / "info.json").read_text())["augment"] == {"crop_padding": 4, "flip": True}
  proc = subprocess.Popen(cmd(tmp_path / "killed"), cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  wait_until(lambda: max(_steps(tmp_path / "killed") or [0]) >= 30, proc, "checkpoint 30")
  proc.send_signal(signal.SIGKILL)
  assert proc.wait() == -signal.SIGKILL and max(_steps(tmp_path / "killed")) < 200
  resumed = subprocess.run(cmd(tmp_path / "killed"), cwd=REPO, env=cli_env(), capture_output=True, text=True)
  assert resumed.returncode == 0 and "resumed from the checkpoint" in resumed.stdout, resumed.stderr[-3000:]
  (step_a, a), (step_b, b) = checkpoint_arrays(tmp_path / "whole"), checkpoint_arrays(tmp_path / "killed")
  assert step_a == step_b == 200 and len(a) == len(b)
  assert all(x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a, b))


def write_idx(path, array, compress=True):
  header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  raw = header + array.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(raw) if compress else raw)
  return path


def small_fashion(folder, n_train=100, n_test=30):
  rng = np.random.default_rng(0)
  folder.mkdir()
  for split, n in (("train", n_train), ("test", n_test)):
    images, labels = fashion_mnist.FILES[split]
    write_idx(folder / f"{images}.gz", rng.integers(0, 256, (n, 28, 28)))
    write_idx(folder / labels, np.arange(n) % 10, compress=False)  # the reader takes plain files too
  return folder


def test_idx_reader_round_trips_and_refuses_other_files(tmp_path):
  array = np.random.default_rng(1).integers(0, 256, (5, 3, 2))
  np.testing.assert_array_equal(fashion_mnist.read_idx(write_idx(tmp_path / "a.gz", array)), array)
  np.testing.assert_array_equal(fashion_mnist.read_idx(write_idx(tmp_path / "b", array[0, 0], False)), array[0, 0])
  (tmp_path / "c").write_bytes(b"\0\0\x0d\x01" + np.asarray([2], ">u4").tobytes() + b"\0" * 8)  # float IDX
  with pytest.raises(UserError, match="not an unsigned-byte IDX file"):
    fashion_mnist.read_idx(tmp_path / "c")
  (tmp_path / "d").write_bytes((tmp_path / "b").read_bytes()[:-1])
  with pytest.raises(UserError, match="header announces 2"):
    fashion_mnist.read_idx(tmp_path / "d")


def test_fashion_mnist_builder_on_small_idx_files(tmp_path, capfd):
  manual = small_fashion(tmp_path / "idx")
  ds = fashion_mnist.load({"manual_dir": str(manual), "data_dir": str(tmp_path / "tfds")})
  assert "Downloading" not in capfd.readouterr().out  # no TFDS download message for files already here
  assert {k: len(v) for k, v in ds.splits.items()} == {"train": 90, "validation": 10, "test": 30}
  assert ds.info["input_shape"] == [28, 28, 1] and ds.info["label_names"][9] == "Ankle boot"
  expected = fashion_mnist.read_idx(manual / "t10k-images-idx3-ubyte.gz")
  stored = sorted((int(e["label"]), e["inputs"][..., 0].tobytes()) for e in (ds.splits["test"][i] for i in range(30)))
  assert stored == sorted((i % 10, image.tobytes()) for i, image in enumerate(expected))  # TFDS reorders rows
  with pytest.raises(UserError, match=r"manual_dir"):
    fashion_mnist.load({"manual_dir": str(tmp_path), "data_dir": str(tmp_path / "tfds2")})


@pytest.mark.slow  # real data
def test_the_real_fashion_mnist_files(real_datasets):
  folder = real_datasets / "fashion_mnist"
  images, labels = fashion_mnist.read_split(folder, "test")
  assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10
  assert 60 < images.mean() < 80  # ink on a dark background, not noise (noise would be ~127)
