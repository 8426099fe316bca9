"""Predict with a trained run: its vocabulary or tokenizer, image size and normalisation, table statistics
and label names all come from the work directory, exactly as training applied them.

  flaxforge predict --workdir=runs/20ng "text to classify" "another text"
  flaxforge predict --workdir=runs/20ng --input=texts.txt --json        # one text per line ('-': stdin)
  flaxforge predict --workdir=runs/photos photo.jpg --input=more_photos/  # image files, or a folder of them
  flaxforge predict --workdir=runs/churn --input=rows.csv                 # table rows (.csv, .tsv, .jsonl)

Output line i belongs to input i: a blank text line gets an empty result. A regression run prints values.
"""
import json
import pathlib
import sys

from absl import flags

from flaxforge.launch import common

INPUT = flags.DEFINE_string("input", None, "Texts: a file with one per line ('-' for stdin), or a .csv, .tsv "
                            "or .jsonl file (the run's text column). Images: a file or a folder of them. Tables: "
                            "a .csv, .tsv or .jsonl file of rows.")
TOP_K = flags.DEFINE_integer("top_k", 3, "How many labels to show per input.")
JSON = flags.DEFINE_bool("json", False, "One JSON object per input: {input, top: [{label, probability}]} "
                         "(or {input, value} for regression).")
STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
BEST = flags.DEFINE_bool("best", False, "Use the checkpoint with the best validation metric.")


def _texts(args: list[str], workdir: str) -> tuple[list[str], list[str]]:
  """(names, texts): one per argument or input line; blank lines are kept (each gets an empty result). A .csv,
  .tsv or .jsonl --input gives the texts of its column named as the run's data.text_column ("text")."""
  if args:
    return args, args
  from flaxforge.data import text_files  # pylint: disable=g-import-not-at-top
  if INPUT.value and pathlib.Path(INPUT.value).suffix.lower() in text_files.TABLE_SUFFIXES:
    if not pathlib.Path(INPUT.value).is_file():
      raise common.UserError(f"--input={INPUT.value} not found; pass a readable file")
    column = _stored_config(workdir).data.get("text_column") or "text"
    texts, source = text_files.read_texts(INPUT.value, column, fix=f"give the file a {column!r} column (the "
                                          "run's data.text_column), or pass plain text, one per line"), INPUT.value
  elif INPUT.value and INPUT.value != "-":
    try:
      with open(INPUT.value, encoding="utf-8", errors="replace") as f:
        texts, source = [line.rstrip("\r\n") for line in f], INPUT.value
    except OSError as e:
      raise common.UserError(f"cannot read --input={INPUT.value} ({e.strerror}); pass a readable text file, one "
                             "text per line, or --input=- for stdin") from None
  elif INPUT.value == "-" or not sys.stdin.isatty():
    texts, source = [line.rstrip("\r\n") for line in sys.stdin], "stdin"
  else:
    raise common.UserError("no text to classify: pass texts as arguments, --input=FILE, or pipe them on stdin")
  if not any(t.strip() for t in texts):
    raise common.UserError(f"{source} holds no text to classify; put one text per line in it")
  return texts, texts


def _images(args: list[str], workdir: str) -> tuple[list[str], list[str]]:
  """(names, paths): image files named as arguments or by --input, a folder standing for the images in it."""
  from flaxforge.data import image_folder  # pylint: disable=g-import-not-at-top
  paths = []
  for given in args + ([INPUT.value] if INPUT.value else []):
    path = pathlib.Path(given)
    if path.is_dir():
      found = image_folder.image_files(path)
      if not found:
        raise common.UserError(f"{given} holds no {'/'.join(image_folder.EXTENSIONS)} files; pass image files")
      paths += found
    elif path.is_file():
      paths.append(path)
    else:
      raise common.UserError(f"{given}: no such image file or folder; pass image paths or --input=FOLDER")
  if not paths:
    raise common.UserError("no image to classify: pass image files as arguments or --input=FILE_OR_FOLDER")
  return [str(p) for p in paths], [str(p) for p in paths]


def _rows(args: list[str], workdir: str) -> tuple[list[str], list[dict]]:
  """(names, rows): the rows of --input's table, or JSON objects given as arguments."""
  if args:
    try:
      rows = [json.loads(a) for a in args]
    except ValueError:
      rows = None
    if rows is None or not all(isinstance(r, dict) for r in rows):
      raise common.UserError("table rows as arguments are JSON objects, e.g. '{\"age\": 41, \"plan\": \"pro\"}'; "
                             "or pass --input=rows.csv")
    return args, rows
  if not INPUT.value:
    raise common.UserError("no rows to predict: pass --input=rows.csv (or .tsv, .jsonl) or JSON objects as arguments")
  from flaxforge.data import tabular  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(INPUT.value)
  if not path.is_file():
    raise common.UserError(f"--input={INPUT.value} not found; pass a .csv, .tsv or .jsonl file of rows")
  rows = tabular.read(path).to_dict(orient="records")  # an empty cell is NaN: filled as in training
  return [f"{path.name}:{i + 1}" for i in range(len(rows))], rows


READERS = {"text": _texts, "image": _images, "table": _rows}


def _stored_config(workdir: str):
  from flaxforge.trainer import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  return workdir_lib.load_config(workdir_lib.resolve(workdir))


def _encoding(workdir: str) -> str:
  """The run's input encoding, from its info.json and assets (texts where the folder holds no run: the restore
  then says what is missing)."""
  from flaxforge.inference import predict  # pylint: disable=g-import-not-at-top
  from flaxforge.trainer import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  folder = workdir_lib.resolve(workdir)
  if not (folder / "info.json").exists():
    return "text"
  return predict.input_encoding(workdir_lib.read_json(folder / "info.json"), predict.load_assets(folder))


def main(argv):
  workdir = common.require_workdir()
  common.use_workdir_xla_flags(workdir)
  common.one_checkpoint(STEP.value, BEST.value)
  if TOP_K.value < 1:
    raise common.UserError(f"--top_k={TOP_K.value} is out of range; use --top_k=1 or more (how many labels to "
                           "show per input)")
  from flaxforge.inference import predict  # pylint: disable=g-import-not-at-top
  names, inputs = READERS[_encoding(workdir)](argv[1:], workdir)  # read first: a bad input fails before the restore
  predictor = predict.Predictor.from_workdir(workdir, step=STEP.value, best=BEST.value)
  kept = [x for x in inputs if not isinstance(x, str) or x.strip()]  # blank text lines get an empty line
  results = iter(predictor.results(kept, min(TOP_K.value, len(predictor.labels) or 1)) if kept else [])
  for name, raw in zip(names, inputs):
    result = next(results) if not isinstance(raw, str) or raw.strip() else {"top": []}
    if JSON.value:
      print(json.dumps({("text" if predictor.encoding == "text" else "input"): name, **result}))
    elif "value" in result:
      print(f"{result['value']:.6g}\t{name[:80]}")
    else:
      print(", ".join(f"{t['label']} {t['probability']:.3f}" for t in result["top"]) + f"\t{name[:80]}")


if __name__ == "__main__":
  common.run(main)
