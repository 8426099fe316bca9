"""The modality table (inference/inputs.py): each modality's CLI reader, JSON reader and encoder, and the one
rule for empty inputs that `flaxforge predict`, the server and the Python Predictor share (no training)."""
import base64
import io

import numpy as np
import pytest
from PIL import Image

from flaxforge.core.errors import UserError
from flaxforge.data import text as text_lib
from flaxforge.inference import inputs, predict

TEXT, IMAGE, TABLE = inputs.MODALITIES["text"], inputs.MODALITIES["image"], inputs.MODALITIES["table"]
LIMITS = {"max_inputs": 4, "max_chars": 50}


def _text_assets() -> dict:
  encoder = text_lib.TextEncoder.fit(["bake the flour", "the coach"], seq_len=6)
  return {"text_encoder": encoder.to_json(), "labels": ["cooking", "sports"]}


def _png(size=(4, 4)) -> bytes:
  out = io.BytesIO()
  Image.new("RGB", size, (200, 10, 10)).save(out, format="PNG")
  return out.getvalue()


def test_each_modality_reads_its_json_field():
  assert TEXT.from_json({"texts": ["bake", "coach"]}, **LIMITS) == ["bake", "coach"]
  assert IMAGE.from_json({"images": [base64.b64encode(_png()).decode()]}, **LIMITS) == [_png()]
  assert TABLE.from_json({"rows": [{"age": 41}]}, **LIMITS) == [{"age": 41}]
  with pytest.raises(UserError, match=r"^'texts' must be a non-empty list of strings$"):
    TEXT.from_json({"texts": [1]}, **LIMITS)
  with pytest.raises(UserError, match=r"^'rows' must be a non-empty list of objects of column: value$"):
    TABLE.from_json({"rows": ["a"]}, **LIMITS)
  with pytest.raises(UserError, match=r"^'images' must hold base64 strings of image files \(PNG, JPEG, \.\.\.\)$"):
    IMAGE.from_json({"images": ["not base64!"]}, **LIMITS)
  with pytest.raises(inputs.TooLarge, match="at most 4 texts per request"):
    TEXT.from_json({"texts": ["a"] * 5}, **LIMITS)
  with pytest.raises(inputs.TooLarge, match="a text is over 50 characters"):
    TEXT.from_json({"texts": ["a" * 51]}, **LIMITS)


def test_an_empty_input_is_refused_alike_by_the_cli_the_json_reader_and_the_encoder(tmp_path):
  """One rule: the CLI, the server's JSON reader and the Python encoder each refuse it, naming where it is."""
  (tmp_path / "texts.txt").write_text("bake the flour\n   \nthe coach\n")
  blank = "is a blank text: there is nothing to predict from; remove it"
  with pytest.raises(UserError, match=f"^{tmp_path / 'texts.txt'} line 2 {blank}$"):
    TEXT.from_cli([], str(tmp_path / "texts.txt"), str(tmp_path))
  with pytest.raises(UserError, match=f"^argument 2 {blank}$"):
    TEXT.from_cli(["bake", ""], None, str(tmp_path))
  with pytest.raises(UserError, match=f"^'texts'\\[1\\] {blank}$"):
    TEXT.from_json({"texts": ["bake", " \t"]}, **LIMITS)
  encode = TEXT.encoder({}, _text_assets())
  with pytest.raises(UserError, match=f"^input 1 {blank}$"):
    encode(["bake", "\n"])
  assert encode(["bake the flour"]).shape == (1, 6)  # a text with content is encoded
  predictor = predict.Predictor(lambda ids: np.zeros((len(ids), 2), np.float32), {}, _text_assets())
  with pytest.raises(UserError, match=f"^input 0 {blank}$"):
    predictor.predict("  ")


def test_empty_images_and_rows_are_refused(tmp_path):
  (tmp_path / "empty.png").write_bytes(b"")
  (tmp_path / "red.png").write_bytes(_png())
  with pytest.raises(UserError, match=r"empty\.png is an empty image file: there is nothing to predict from"):
    IMAGE.from_cli([str(tmp_path / "red.png"), str(tmp_path / "empty.png")], None, str(tmp_path))
  assert IMAGE.from_cli([str(tmp_path / "red.png")], None, str(tmp_path))[1] == [str(tmp_path / "red.png")]
  with pytest.raises(UserError, match=r"^'images'\[0\] is an empty image file"):
    IMAGE.from_json({"images": [""]}, **LIMITS)
  encode = IMAGE.encoder({"input_shape": [2, 2, 3], "input_scale": 1 / 255}, {})
  with pytest.raises(UserError, match=r"^input 0 is an empty image file"):
    encode([b""])
  assert encode([_png()]).shape == (1, 2, 2, 3)
  with pytest.raises(UserError, match=r"^argument 1 is a row naming no column"):
    TABLE.from_cli(["{}"], None, str(tmp_path))
  with pytest.raises(UserError, match=r"^'rows'\[1\] is a row naming no column"):
    TABLE.from_json({"rows": [{"age": 3}, {}]}, **LIMITS)


def test_a_runs_modality_comes_from_its_info_or_assets():
  assert inputs.modality({"input_encoding": "table"}, {}) is TABLE
  assert inputs.modality({}, {"text_encoder": {}}) is TEXT
  assert inputs.modality({"input_shape": [8, 8, 1], "input_scale": 1.0}, {}) is IMAGE
  with pytest.raises(UserError, match="this run is a language model"):
    inputs.modality({"task": "lm"}, {})
