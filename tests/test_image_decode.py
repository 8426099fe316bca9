"""Issue 30 S3, S4, D7: every image read (a training folder, `flaxforge predict`, the server, the Python
Predictor) goes through one decoder that applies EXIF orientation, converts 16-bit, 32-bit, float, alpha,
palette-with-transparency and CMYK images to the 8-bit values a viewer shows, and refuses a decompression bomb
in one line (exit 2) or a 400 naming the limit and how to raise it. Files are written with Pillow here."""
import base64
import io
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from fastapi import testclient
from PIL import Image

from flaxforge.core.errors import UserError
from flaxforge.data import image_folder
from flaxforge.inference import inputs, predict
from flaxforge.launch.configs import image_folder as image_folder_config
from flaxforge.serving import server
from flaxforge.trainer import loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = inputs.MODALITIES["image"]
WHITE, RED = (255, 255, 255), (255, 0, 0)


def _saved(image: Image.Image, fmt: str, **options) -> bytes:
  out = io.BytesIO()
  image.save(out, format=fmt, **options)
  return out.getvalue()


def _decoded(data: bytes, shape, color="rgb") -> np.ndarray:
  """The pixels the Python Predictor's encoder gives `data` (input_scale 1: the 8-bit values themselves)."""
  channels = 3 if color == "rgb" else 1
  encode = IMAGE.encoder({"input_shape": [*shape, channels], "input_scale": 1.0}, {})
  return encode([data])[0]


def _upright() -> np.ndarray:
  """A 16x12 (height x width) photo as a viewer shows it: a white top band over black."""
  pixels = np.zeros((16, 12, 3), np.uint8)
  pixels[:4] = 255
  return pixels


def _exif_rotated_jpeg() -> bytes:
  """_upright() stored as a camera does when held sideways: pixels rotated, EXIF Orientation=6 (rotate 90
  degrees clockwise to show)."""
  stored = Image.fromarray(_upright()).transpose(Image.Transpose.ROTATE_90)
  exif = Image.Exif()
  exif[0x0112] = 6
  return _saved(stored, "JPEG", quality=95, exif=exif)


def test_exif_orientation_is_applied():
  pixels = _decoded(_exif_rotated_jpeg(), (16, 12))
  assert pixels[:4].mean() > 240 and pixels[5:].mean() < 15  # the white band on top, as a viewer shows it


@pytest.mark.parametrize("mode, values, expected", [
    ("I;16", [0, 2570, 32896, 65535], [0, 10, 128, 255]),  # 16-bit: v / 257
    ("I", [0, 2570, 32896, 70000], [0, 10, 128, 255]),  # 32-bit integers read as 16-bit (PNG), clipped
    ("F", [0.0, 0.25, 0.5, 1.5], [0, 64, 128, 255]),  # float in [0, 1], clipped
])
def test_high_bit_depth_greyscale_is_scaled_to_8_bits(mode, values, expected):
  array = np.array([values] * 2, {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode])
  image = Image.fromarray(array, mode) if mode != "I;16" else Image.fromarray(array)
  assert image.mode == mode
  data = _saved(image, "PNG" if mode == "I;16" else "TIFF")
  assert Image.open(io.BytesIO(data)).mode == mode
  np.testing.assert_array_equal(_decoded(data, (2, 4), "grey")[0, :, 0], expected)
  np.testing.assert_array_equal(_decoded(data, (2, 4))[1], np.repeat(np.array(expected)[:, None], 3, 1))


def test_transparency_is_shown_over_white():
  alpha = np.array([[255, 0, 128]], np.uint8)
  la = Image.fromarray(np.stack([np.full((1, 3), 100, np.uint8), alpha], -1), "LA")
  opacity = alpha[0] / 255.0
  over_white = np.rint(100 * opacity + 255 * (1 - opacity))
  np.testing.assert_allclose(_decoded(_saved(la, "PNG"), (1, 3), "grey")[0, :, 0], over_white, atol=1)
  rgba = Image.fromarray(np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 0]]], np.uint8), "RGBA")
  np.testing.assert_array_equal(_decoded(_saved(rgba, "PNG"), (1, 3))[0], [RED, WHITE, WHITE])
  palette = Image.fromarray(np.array([[0, 1, 1, 0]], np.uint8), "P")
  palette.putpalette([0, 0, 0, *RED])
  data = _saved(palette, "PNG", transparency=0)
  assert Image.open(io.BytesIO(data)).mode == "P" and "transparency" in Image.open(io.BytesIO(data)).info
  np.testing.assert_array_equal(_decoded(data, (1, 4))[0], [WHITE, RED, RED, WHITE])  # not black


def test_cmyk_jpeg_is_converted_to_rgb():
  cmyk = Image.new("CMYK", (8, 8), (0, 128, 255, 0))  # R = 255 (1 - C)(1 - K), G = 255 (1 - M)(1 - K), ...
  data = _saved(cmyk, "JPEG", quality=100)
  assert Image.open(io.BytesIO(data)).mode == "CMYK"
  np.testing.assert_allclose(_decoded(data, (8, 8))[4, 4], (255, 127, 0), atol=3)


def _bomb(path) -> str:
  """A small PNG of 15000 x 12000 bilevel pixels: over Pillow's decompression-bomb limit."""
  Image.new("1", (15000, 12000)).save(path)
  return str(path)


def test_a_decompression_bomb_is_one_line_naming_the_limit(tmp_path):
  with pytest.raises(UserError, match=r"^image 0: 15000 x 12000 = 180,000,000 pixels is over the limit of "
                                      r"178,956,970 .*; raise it with --max_image_pixels=N"):
    _decoded(open(_bomb(tmp_path / "bomb.png"), "rb").read(), (8, 8))


def test_a_bomb_in_a_training_folder_is_one_line_and_prepares_nothing(tmp_path):
  for name in ("a", "b"):
    (tmp_path / "photos" / name).mkdir(parents=True)
    for i in range(5):
      Image.new("RGB", (4, 4)).save(tmp_path / "photos" / name / f"{i}.png")
  _bomb(tmp_path / "photos" / "b" / "bomb.png")
  with pytest.raises(UserError, match=r"bomb\.png: 15000 x 12000 = 180,000,000 pixels is over the limit of 178,956,970 "
                                      r".*raise it with --config\.data\.max_image_pixels=N"):
    image_folder.load({"path": str(tmp_path / "photos"), "data_dir": str(tmp_path / "tfds"), "image_size": (4, 4)})
  left = list((tmp_path / "tfds").rglob("*")) if (tmp_path / "tfds").exists() else []
  assert not left, left  # nothing half-written


def _folder(root):
  """Two classes, `top` (a white band on top) and `left` (on the left), JPEGs; the top class's photos are
  stored on their side with EXIF Orientation=6, and a 16-bit PNG of the left class."""
  for name in ("top", "left"):
    (root / name).mkdir(parents=True)
  for i in range(6):
    (root / "top" / f"{i}.jpg").write_bytes(_exif_rotated_jpeg())
    left = _upright().transpose(1, 0, 2).copy()  # the band on the left
    Image.fromarray(left).save(root / "left" / f"{i}.jpg", quality=95)
  left16 = _upright().transpose(1, 0, 2)[..., 0].astype(np.uint16) * 257
  Image.fromarray(left16).save(root / "left" / "16bit.png")
  return root


def test_a_training_folder_is_decoded_the_same_way(tmp_path):
  ds = image_folder.load({"path": str(_folder(tmp_path / "photos")), "data_dir": str(tmp_path / "tfds"),
                          "image_size": (12, 12), "color": "grey", "validation_fraction": 0.0,
                          "test_fraction": 0.2})
  rows = [ds.splits[s][i] for s in ds.splits for i in range(len(ds.splits[s]))]
  names = ds.info["label_names"]
  for row in rows:
    band = row["inputs"][:3, :, 0].mean() if names[row["label"]] == "top" else row["inputs"][:, :3, 0].mean()
    assert band > 200 and row["inputs"].mean() < 120, (names[row["label"]], row["inputs"][..., 0])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A tiny ConvNet trained on _folder() (greyscale 12x12)."""
  tmp = tmp_path_factory.mktemp("images")
  config = image_folder_config.get_config()
  config.data.update(path=str(_folder(tmp / "photos")), data_dir=str(tmp / "tfds"), image_size=(12, 12),
                     color="grey", batch_size=4)
  config.model.update(channels=(4,), dense=8, dropout=0.0)
  config.train.update(num_steps=4, eval_every_steps=4, log_every=4, progress_bar=False)
  loop.train(config, str(tmp / "run"), devices=jax.devices()[:1])
  return tmp


def _predict(*args):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return subprocess.run([sys.executable, "-m", "flaxforge.launch.predict", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # a whole training and a subprocess CLI run
def test_predict_refuses_a_bomb_in_one_line_and_the_server_with_a_400(run, tmp_path):
  bomb = _bomb(tmp_path / "bomb.png")
  out = _predict(f"--workdir={run / 'run'}", bomb)
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1 and out.stdout == "", out.stderr[-3000:]
  assert lines[0].startswith(f"error: {bomb}: 15000 x 12000 = 180,000,000 pixels is over the limit of 178,956,970")
  assert "--max_image_pixels=N" in lines[0]
  predictor = predict.Predictor.from_workdir(str(run / "run"))
  with testclient.TestClient(server.make_app(predictor=predictor)) as client:
    answer = client.post("/v1/predict", json={"images": [base64.b64encode(open(bomb, "rb").read()).decode()]})
    assert answer.status_code == 400, answer.text
    message = answer.json()["error"]["message"]
    assert message.startswith("'images'[0]: 15000 x 12000 = 180,000,000 pixels is over the limit") and \
        "--max_image_pixels=N" in message
    exif = client.post("/v1/predict", json={"images": [base64.b64encode(_exif_rotated_jpeg()).decode()]})
    assert exif.status_code == 200
  raised = predict.Predictor.from_workdir(str(run / "run"), max_image_pixels=200_000_000)
  assert len(raised.predict(bomb)) == 1  # a raised limit decodes it


def test_the_limit_is_a_declared_field_and_pillows_own():
  from flaxforge.data import fields, images  # pylint: disable=g-import-not-at-top
  assert fields.ImageFolder.read({}).max_image_pixels == images.MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS
  assert json.dumps(images.MAX_PIXELS)
