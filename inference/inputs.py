"""The inputs a classifier or regressor run takes, one object per modality (text, image, table), so that
`flaxforge predict`, the HTTP server and the Python `Predictor` read, refuse and encode them alike. Each has
- `from_cli`: what `flaxforge predict` reads from its arguments and --input (texts: arguments, lines of a
  file or stdin, or a .csv/.tsv/.jsonl's text column; images: files, a folder standing for its images;
  tables: JSON objects, or the rows of a .csv/.tsv/.jsonl);
- `from_json`: what POST /v1/predict reads from its body ("texts": [string], "images": [base64 of a file],
  "rows": [{column: value}]);
- `encoder`: raw inputs -> model inputs, through the run's stored assets only, never re-fitted (texts: int32
  [B, seq_len] token ids; images: float32 [B, H, W, C], decoded, resized, normalised; rows: float32
  [B, features] through the training split's statistics).

A run's modality is its info.json's `input_encoding` (older runs: inferred from their assets; `modality`).
A fourth modality is one class here and one entry in MODALITIES.

One rule for empty inputs everywhere: an input with nothing in it (a blank text, an empty image file, a
table row naming no column) is refused with a UserError naming it (the CLI exits with status 2, the server
answers 400 naming the field), never predicted.
"""
import base64
import binascii
import io
import json
import math
import os
import pathlib
import sys

import numpy as np
from etils import epath

from flaxforge.core.errors import UserError
from flaxforge.core import paths, run_config
from flaxforge.data import file_rows, images as images_lib, preprocess, text as text_lib


class TooLarge(UserError):
  """A request over one of the server's size limits (the server answers 413)."""


class Encoder:
  """`encode(raw inputs, names=None) -> np.ndarray [B, ...]`, refusing empty inputs first; `names[i]` (default
  "input i") is where input i came from, in errors. `signature`: (the shape of one example, its dtype name);
  `text_encoder`: the text modality's encoder (explain reads its vocabulary); `unseen(raws, names)`: what of
  each input training never saw (tables: categories), and one line saying it ("" when nothing)."""

  def __init__(self, modality: "Modality", encode, signature: tuple, text_encoder=None, unseen=None):
    self.modality, self._encode, self.signature, self.text_encoder = modality, encode, signature, text_encoder
    self._unseen = unseen

  def __call__(self, raws, names: list[str] | None = None) -> np.ndarray:
    raws = list(raws)
    self.modality.refuse_empty(raws, names or [f"input {i}" for i in range(len(raws))])
    return self._encode(raws, names)

  def unseen(self, raws, names: list[str] | None = None) -> tuple[list[dict], str]:
    """([{what: value} per input], one line naming them) for the inputs' values training never saw."""
    raws = list(raws)
    if self._unseen is None:
      return [{} for _ in raws], ""
    return self._unseen(raws, names or [f"input {i}" for i in range(len(raws))])


class Modality:
  """One kind of input. Subclasses set the names and implement the three readers' specific parts."""
  name = ""  # info.json's input_encoding
  field = ""  # the JSON body's field holding the inputs
  holds = ""  # what the field holds, in words
  empty = ""  # an input with nothing in it, in words
  _json_type = str  # the type of each item of the JSON field

  def is_empty(self, raw) -> bool:
    raise NotImplementedError

  def refuse_empty(self, raws: list, names: list[str]):
    """UserError naming the first empty input (`names[i]` says where raw input i came from)."""
    for raw, name in zip(raws, names):
      if self.is_empty(raw):
        raise UserError(f"{name} is {self.empty}: there is nothing to predict from; remove it")

  def from_cli(self, args: list[str], path: str | None, workdir: str) -> tuple[list[str], list]:
    """(names, raw inputs) from the command's arguments and --input `path`: the names label the output lines."""
    raise NotImplementedError

  def json_names(self, count: int) -> list[str]:
    """How errors name the inputs of a JSON body: 'texts'[0], 'texts'[1], ..."""
    return [f"'{self.field}'[{i}]" for i in range(count)]

  def from_json(self, body: dict, *, max_inputs: int, max_chars: int) -> list:
    """The raw inputs in `body[self.field]`, at most `max_inputs` of them (texts: `max_chars` long); UserError
    naming the field, TooLarge over a limit."""
    inputs = body.get(self.field)
    if not isinstance(inputs, list) or not inputs:
      raise UserError(f"'{self.field}' must be a non-empty list of {self.holds}")
    if len(inputs) > max_inputs:
      raise TooLarge(f"at most {max_inputs} {self.field} per request (got {len(inputs)}); split the request")
    if not all(isinstance(x, self._json_type) for x in inputs):
      raise UserError(f"'{self.field}' must be a non-empty list of {self.holds}")
    raws = self._from_json(inputs, max_chars)
    self.refuse_empty(raws, self.json_names(len(raws)))
    return raws

  def _from_json(self, inputs: list, max_chars: int) -> list:
    """The raw inputs of a list of `_json_type` items."""
    del max_chars
    return inputs

  def encoder(self, info: dict, assets: dict) -> Encoder:
    """The run's encoder, from its info.json and assets/*.json (as dicts)."""
    raise NotImplementedError


class Text(Modality):
  name, field, holds, empty = "text", "texts", "strings", "a blank text"

  def is_empty(self, raw) -> bool:
    return isinstance(raw, str) and not raw.strip()

  def from_cli(self, args, path, workdir):
    """One text per argument or --input line (a .csv/.tsv/.jsonl: the run's data.text_column, "text")."""
    if args:
      self.refuse_empty(args, [f"argument {i + 1}" for i in range(len(args))])
      return args, args
    texts, source, unit = _read_texts(path, workdir)
    if not any(t.strip() for t in texts):
      raise UserError(f"{source} holds no text to classify; put one text per line in it")
    self.refuse_empty(texts, [f"{source} {unit} {i + 1}" for i in range(len(texts))])
    return texts, texts

  def _from_json(self, inputs, max_chars):
    if any(len(text) > max_chars for text in inputs):
      raise TooLarge(f"a text is over {max_chars} characters; shorten it")
    return inputs

  def encoder(self, info, assets):
    del info
    text_encoder = text_lib.encoder_from_json(assets["text_encoder"])

    def encode(texts, names):
      del names
      if not all(isinstance(t, str) for t in texts):
        raise UserError("every input must be a text (a JSON string)")
      return text_encoder.encode(texts)
    return Encoder(self, encode, ((text_encoder.seq_len,), "int32"), text_encoder)


class Image(Modality):
  name, field, holds, empty = "image", "images", "base64 strings of image files", "an empty image file"

  def is_empty(self, raw) -> bool:
    if isinstance(raw, (bytes, bytearray)):
      return not raw
    return isinstance(raw, (str, os.PathLike)) and os.path.isfile(raw) and not os.path.getsize(raw)

  def from_cli(self, args, path, workdir):
    """Image files named as arguments or by --input, a folder standing for the images in it."""
    del workdir
    paths = []
    for given in args + ([path] if path else []):
      if pathlib.Path(given).is_dir():
        found = _images().image_files(pathlib.Path(given))
        if not found:
          raise UserError(f"{given} holds no {'/'.join(_images().EXTENSIONS)} files; pass image files")
        paths += [str(p) for p in found]
      elif pathlib.Path(given).is_file():
        paths.append(given)
      else:
        raise UserError(f"{given}: no such image file or folder; pass image paths or --input=FOLDER")
    if not paths:
      raise UserError("no image to classify: pass image files as arguments or --input=FILE_OR_FOLDER")
    self.refuse_empty(paths, paths)
    return paths, paths

  def _from_json(self, inputs, max_chars):
    del max_chars
    try:
      return [base64.b64decode(x, validate=True) for x in inputs]
    except binascii.Error:
      raise UserError(f"'{self.field}' must hold {self.holds} (PNG, JPEG, ...)") from None

  def encoder(self, info, assets):
    """Image files (paths, or their bytes) -> float32 [B, H, W, C]: decoded (data/images.py) and resized as the
    dataset was prepared, normalised with the run's stored `input_scale`/`input_offset`. An image over
    info's `max_image_pixels` (default: Pillow's limit) is refused."""
    del assets
    shape = tuple(info["input_shape"])
    color = "grey" if shape[-1] == 1 else "rgb"
    max_pixels = info.get("max_image_pixels") or images_lib.MAX_PIXELS

    def encode(images, names):
      arrays = []
      for i, image in enumerate(images):
        if isinstance(image, (bytes, bytearray)):
          source, name = io.BytesIO(image), names[i] if names else f"image {i}"
        elif isinstance(image, (str, os.PathLike)):
          source, name = image, str(image)
        else:
          raise UserError("every input must be an image file's path or its bytes")
        arrays.append(images_lib.decode(source, shape[:2], color, name=name, max_pixels=max_pixels))
      return preprocess.normalize(np.stack(arrays), info["input_scale"], info.get("input_offset", 0.0))
    return Encoder(self, encode, (shape, "float32"))


class Table(Modality):
  name, field, holds, empty = "table", "rows", "objects of column: value", "a row naming no column"
  _json_type = dict

  def is_empty(self, raw) -> bool:
    return isinstance(raw, dict) and not raw

  def from_cli(self, args, path, workdir):
    """The rows of --input's table, or JSON objects given as arguments (an empty cell: filled as in training).
    A numeric cell that is no finite number is refused here, naming its row, before the run is restored."""
    if args:
      try:
        rows = [json.loads(a) for a in args]
      except ValueError:
        rows = None
      if rows is None or not all(isinstance(r, dict) for r in rows):
        raise UserError("table rows as arguments are JSON objects, e.g. '{\"age\": 41, \"plan\": \"pro\"}'; or "
                        "pass --input=rows.csv")
      names = [f"argument {i + 1}" for i in range(len(rows))]
      self.refuse_empty(rows, names)
      _refuse_json_constants(rows, names)
      _check_numbers(rows, names, workdir)
      return args, rows
    if not path:
      raise UserError("no rows to predict: pass --input=rows.csv (or .tsv, .jsonl) or JSON objects as arguments")
    if not pathlib.Path(path).is_file():
      raise UserError(f"--input={path} not found; pass a .csv, .tsv or .jsonl file of rows")
    rows = _tabular()[0].read(path).to_dict(orient="records")  # an empty cell is NaN: filled as in training
    names = [f"{pathlib.Path(path).name}:{i + 1}" for i in range(len(rows))]
    self.refuse_empty(rows, names)
    _check_numbers(rows, names, workdir)
    return names, rows

  def _from_json(self, inputs, max_chars):
    del max_chars
    _refuse_json_constants(inputs, self.json_names(len(inputs)))
    return inputs

  def encoder(self, info, assets):
    """Table rows ({column: value} dicts; a missing or null value is filled as in training) -> float32
    [B, features], through the statistics fitted on the training split (assets/table_transform.json). A
    numeric cell that is no finite number is refused (tabular.transform); `unseen` names the categories
    training never saw."""
    del info
    (tabular, pd), statistics = _tabular(), assets["table_transform"]
    from flaxforge.data import table_cells  # pylint: disable=g-import-not-at-top  (pandas: see _tabular)

    def encode(rows, names):
      if not all(isinstance(row, dict) for row in rows):
        raise UserError("every input must be a table row: a JSON object of column: value")
      return tabular.transform(statistics, pd.DataFrame.from_records(rows), names)

    def unseen(rows, names):
      found = table_cells.unseen(statistics, pd.DataFrame.from_records(rows))
      said = []
      for name, cells in zip(names, found):
        for column, value in cells.items():
          seen = table_cells.case_variant(statistics, column, value)
          said.append(f"{name} {column}={value!r}" + (f" (training saw {seen!r})" if seen else ""))
      count = sum(map(bool, found))
      line = (f"{count} of {len(rows)} row{'' if len(rows) == 1 else 's'} hold categories training never saw, "
              f"each encoded as all zeros: {', '.join(said)}") if count else ""
      return found, line
    return Encoder(self, encode, ((len(tabular.feature_names(statistics)),), "float32"), unseen=unseen)


def _refuse_json_constants(rows: list[dict], names: list[str]):
  """UserError naming the first value that is NaN or +-Infinity (Python's JSON reader takes them, and 1e309;
  JSON itself has none of them)."""
  for row, name in zip(rows, names):
    for column, value in row.items():
      if isinstance(value, float) and not math.isfinite(value):
        shown = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        raise UserError(f"{name}[{column!r}] is {shown}, which JSON does not allow; send null for a missing "
                        "value or a finite number")


def _check_numbers(rows: list[dict], names: list[str], workdir: str):
  """Encodes `rows` through the run's stored statistics, if it has them, for their errors alone (a numeric
  cell that is no finite number, named by row), before the run is restored."""
  file = epath.Path(paths.expand(workdir)) / "assets" / "table_transform.json"
  if file.exists():
    tabular, pd = _tabular()
    tabular.transform(run_config.read_json(file), pd.DataFrame.from_records(rows), names)


def _read_texts(path: str | None, workdir: str) -> tuple[list[str], str, str]:
  """(texts, where they came from, what one of them is there: "line" or "row") of --input `path`, or stdin."""
  if path and pathlib.Path(path).suffix.lower() in file_rows.TABLE_SUFFIXES:
    if not pathlib.Path(path).is_file():
      raise UserError(f"--input={path} not found; pass a readable file")
    column = run_config.read(workdir).data.get("text_column") or "text"
    return file_rows.read_texts(path, column, fix=f"give the file a {column!r} column (the run's "
                                 "data.text_column), or pass plain text, one per line"), path, "row"
  if path and path != "-":
    try:
      with open(path, encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\r\n") for line in f], path, "line"
    except OSError as e:
      raise UserError(f"cannot read --input={path} ({e.strerror}); pass a readable text file, one text per "
                      "line, or --input=- for stdin") from None
  if path == "-" or not sys.stdin.isatty():
    return [line.rstrip("\r\n") for line in sys.stdin], "stdin", "line"
  raise UserError("no text to classify: pass texts as arguments, --input=FILE, or pipe them on stdin")


def _images():
  """data/image_folder.py, imported on use: its dataset builder brings TFDS, a second that text and table
  runs, and predict's check of its inputs, need not wait for."""
  from flaxforge.data import image_folder  # pylint: disable=g-import-not-at-top
  return image_folder


def _tabular():
  """data/tabular.py and pandas, imported on use: with scikit-learn they take seconds that text and image
  runs need not wait for."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from flaxforge.data import tabular  # pylint: disable=g-import-not-at-top
  return tabular, pd


MODALITIES = {m.name: m for m in (Text(), Image(), Table())}


def modality(info: dict, assets: dict) -> Modality:
  """The run's modality: info's `input_encoding`, else inferred from its assets. UserError for a run that
  takes none of them (a language model)."""
  if "input_encoding" in info:
    return MODALITIES[info["input_encoding"]]
  if "text_encoder" in assets:
    return MODALITIES["text"]
  if "table_transform" in assets:
    return MODALITIES["table"]
  if len(info.get("input_shape", ())) == 3 and "input_scale" in info:
    return MODALITIES["image"]
  if info.get("task") == "lm":
    raise UserError("this run is a language model: it completes text rather than predicting labels; use "
                    "flaxforge generate --workdir=... --prompt=... (or flaxforge serve for completions)")
  raise UserError("this run has no input encoder stored beside its checkpoints (predict, serve and export "
                  "handle text, image and table runs); retrain it with one of those configs")
