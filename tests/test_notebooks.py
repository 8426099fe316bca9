"""examples/notebooks/ run top to bottom in a Jupyter kernel (nbclient) as a user runs them: a cell that raises
fails the test; a training run's progress is one bar redrawn in place, not a line per logging interval; the
figures render inline; and the repository holds the notebooks without outputs. Also the pieces they show:
trainer/plots.py (eval's confusion PNG is its figure), the notebook mode of trainer/progress.py, and a
training's signal handlers put back as they were found (a kernel's interrupt must not become SIGINT's
default, which ends the kernel)."""
import io
import json
import pathlib
import re
import signal
import sys

import numpy as np
import pytest
from etils import epath
from PIL import Image

import flaxforge
from conftest import HANG_GUARD_S, cli_env
from flaxforge.core.errors import UserError
from flaxforge.trainer import metrics, plots, preemption, progress as progress_lib, report

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "examples" / "notebooks"
WIDGET = "application/vnd.jupyter.widget-view+json"


def _execute(name: str, cwd: pathlib.Path, **env: str | None):
  """The executed notebook `name`, run in `cwd` by a fresh kernel with the environment a user's has (one
  CPU device); nbclient raises CellExecutionError on the first cell that raises."""
  import nbclient  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top
  notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
  client = nbclient.NotebookClient(notebook, timeout=HANG_GUARD_S, kernel_name="python3",
                                   resources={"metadata": {"path": str(cwd)}})
  client.execute(env=cli_env(TFDS_DATA_DIR=str(cwd / "tfds"), **env))
  return notebook


def _cell(notebook, code: str):
  """The one code cell whose source holds `code`."""
  cell, = (c for c in notebook.cells if c.cell_type == "code" and code in c.source)
  return cell


def _stream(cell, name: str) -> str:
  return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == name)


def _progress_lines(cell) -> int:
  """Lines of the cell's output that show a step counter ('12/180'): a bar redrawn in place (each redraw
  starts with a carriage return) is one line, or one widget; progress written for a log file is one line
  per logging interval."""
  text = _stream(cell, "stderr")
  return _widgets(cell) + sum(1 for line in text.split("\n") if re.search(r"\b\d+/\d+\b", line))


def _widgets(cell) -> int:
  return sum(WIDGET in o.get("data", {}) for o in cell.outputs)


def _images(notebook) -> int:
  return sum("image/png" in o.get("data", {}) for c in notebook.cells if c.cell_type == "code" for o in c.outputs)


def _train_records(workdir: pathlib.Path) -> list[dict]:
  records = map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
  return [r for r in records if r["split"] == "train"]


def test_the_repository_holds_the_notebooks_without_outputs():
  import nbformat  # pylint: disable=g-import-not-at-top
  names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
  assert names == ["finetune_minilm.ipynb", "quickstart.ipynb"]
  for name in names:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code, name
    dirty = [c.source.splitlines()[0] for c in code if c.outputs or c.execution_count is not None]
    assert not dirty, f"{name}: cells with outputs ({dirty}); clear them before committing"
    assert not any("!" == c.source.lstrip()[:1] or c.source.lstrip().startswith("%") for c in code), name


@pytest.mark.slow  # a Jupyter kernel, two trainings
def test_quickstart_runs_top_to_bottom(tmp_path):
  notebook = _execute("quickstart.ipynb", tmp_path)
  interrupted, resumed = _cell(notebook, "except KeyboardInterrupt"), _cell(notebook, "results = flaxforge.train(")
  stopped = re.search(r"stopped by SIGINT after step (\d+); checkpoint saved", _stream(interrupted, "stdout"))
  assert stopped, _stream(interrupted, "stdout")
  assert "KeyboardInterrupt: training in runs/quickstart stopped" in _stream(interrupted, "stdout")
  assert f"resumed from the checkpoint at step {stopped[1]} " in _stream(resumed, "stdout")
  records = _train_records(tmp_path / "runs" / "quickstart")
  assert len([r for r in records if r["step"] > int(stopped[1])]) >= 20  # the line-a-record mode: 20+ lines
  for cell in (interrupted, resumed):
    # ipywidgets is in the test extra as in the notebook extra: the bar is one widget (without it, one line
    # redrawn in place: test_in_a_notebook_progress_is_one_line_redrawn)
    assert _progress_lines(cell) == 1 and _widgets(cell) == 1, _stream(cell, "stderr")
    assert "WARNING" not in _stream(cell, "stderr")  # absl's records as the command leaves them out
  assert _images(notebook) == 2  # the curves and the confusion matrix, inline
  evaluated = _stream(_cell(notebook, "flaxforge.evaluate(WORKDIR)"), "stdout")
  macro = re.search(r"^ +macro avg +[01]\.\d{3} +[01]\.\d{3} +([01]\.\d{3}) +\d+$", evaluated, re.M)
  macro_f1 = float(re.search(r"'macro_f1': ([\d.]+)", evaluated)[1])
  assert macro and macro[1] == f"{macro_f1:.3f}", evaluated  # the per-class table printed, its F1 the run's
  last = records[-1]["step"]
  report_files = sorted(p.name for p in (tmp_path / "runs" / "quickstart" / "report").iterdir())
  assert report_files == [f"test_step{last}.json", f"test_step{last}_confusion.png"], report_files


@pytest.mark.slow  # a Jupyter kernel, a MiniLM fine-tune and its export
def test_finetune_minilm_runs_top_to_bottom(tmp_path, minilm):
  notebook = _execute("finetune_minilm.ipynb", tmp_path, FLAXFORGE_MODELS=str(pathlib.Path(minilm).parent))
  trained = _cell(notebook, "results = flaxforge.train(")
  assert "LoRA rank 8" in _stream(trained, "stdout")
  assert _progress_lines(trained) == 1 and _widgets(trained) == 1, _stream(trained, "stderr")
  records = _train_records(tmp_path / "runs" / "reviews_lora")
  assert len(records) >= 6
  assert _images(notebook) == 1
  manifest = json.loads((tmp_path / "exported" / "reviews_lora" / "manifest.json").read_text())
  assert manifest["step"] == records[-1]["step"]
  table = _cell(notebook, "serving.export(").outputs[-1]["data"]["text/plain"].splitlines()[1:]
  assert len(table) == 4 and all(row.split()[-2] == row.split()[-1] for row in table), table  # export == run


@pytest.mark.slow  # a Jupyter kernel
def test_a_cell_that_raises_fails_the_run(tmp_path):
  """Without FLAXFORGE_MODELS the MiniLM notebook stops at its first cell, with a message naming the fix."""
  import nbclient  # pylint: disable=g-import-not-at-top
  with pytest.raises(nbclient.exceptions.CellExecutionError, match="set FLAXFORGE_MODELS to the folder"):
    _execute("finetune_minilm.ipynb", tmp_path, FLAXFORGE_MODELS=None)


def test_eval_confusion_png_is_the_plots_figure(tmp_path):
  confusion = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 6]], np.float32)
  results = {"accuracy": 14 / 18, "loss": 0.5, **metrics.class_report(confusion)}
  json_path, png_path = report.write(epath.Path(tmp_path), "test", 9, results, label_names=["a", "b", "c"])
  buffer = io.BytesIO()
  plots.confusion_matrix(str(json_path)).savefig(buffer, format="png", dpi=110)
  written, drawn = (np.asarray(Image.open(f).convert("RGB")) for f in (png_path.open("rb"), buffer))
  assert written.shape[0] > 300 and written.std() > 10  # a picture, not a blank
  np.testing.assert_array_equal(written, drawn)
  assert plots.confusion_matrix(str(json_path)).axes[0].get_title() == (
      "test at step 9: accuracy 0.778, macro-F1 0.764")  # F1s 10/13, 3/5, 12/13 by hand


def test_training_curves_draw_the_newest_record_of_each_step(tmp_path):
  """A resumed run's repeated step is drawn once, with its newer value; a line a crash cut short is skipped."""
  lines = [{"split": "train", "step": 5, "loss": 1.0}, {"split": "train", "step": 10, "loss": 0.8},
           {"split": "validation", "step": 10, "loss": 0.9, "accuracy": 0.5, "macro_f1": 0.4},
           {"split": "train", "step": 10, "loss": 0.7},  # the resumed run's step 10
           {"split": "train", "step": 15, "loss": 0.6},
           {"split": "validation", "step": 20, "loss": 0.5, "accuracy": 0.9, "macro_f1": 0.85},
           {"split": "test", "step": 20, "loss": 0.4, "accuracy": 0.95}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"split": "tra')
  fig = plots.training_curves(tmp_path)
  loss, quality = fig.axes
  curves = {line.get_label(): line.get_xydata().tolist() for ax in fig.axes for line in ax.get_lines()}
  assert curves["training"] == [[5, 1.0], [10, 0.7], [15, 0.6]]
  assert curves["validation"] == [[10, 0.9], [20, 0.5]]
  assert curves["accuracy"] == [[10, 0.5], [20, 0.9]] and curves["macro_f1"] == [[10, 0.4], [20, 0.85]]
  assert loss.get_ylabel() == "loss" and quality.get_ylim() == (0, 1.02)
  assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"  # what a notebook shows inline
  with pytest.raises(UserError, match="no training records in .*: train a run in"):
    plots.training_curves(tmp_path / "empty")


def test_training_curves_of_a_language_model_and_of_a_run_without_validation(tmp_path):
  """A language model's quality is bits per byte, on its own scale (not clipped to [0, 1]); a run with no
  validation split draws its loss alone."""
  lm, plain = tmp_path / "lm", tmp_path / "plain"
  for workdir, lines in ((lm, [{"split": "train", "step": 10, "loss": 3.0},
                               {"split": "validation", "step": 10, "loss": 2.9, "bits_per_byte": 1.6},
                               {"split": "validation", "step": 20, "loss": 2.5, "bits_per_byte": 1.4}]),
                         (plain, [{"split": "train", "step": 10, "loss": 3.0}])):
    workdir.mkdir()
    (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
  _, quality = plots.training_curves(lm).axes
  assert [line.get_label() for line in quality.get_lines()] == ["bits_per_byte"]
  assert quality.get_ylim()[1] > 1.6  # bits per byte above 1 still shown
  only, = plots.training_curves(plain).axes
  assert [line.get_label() for line in only.get_lines()] == ["training"]


def test_in_a_notebook_progress_is_one_line_redrawn(monkeypatch, capsys):
  """stderr is no terminal in a kernel; the bar is still drawn (carriage returns), not a line per interval."""
  monkeypatch.setattr(progress_lib, "in_notebook", lambda: True)
  progress = progress_lib.Progress(total=100, initial=0)
  for _ in range(20):
    progress.update(5)
    progress.log({"loss": 1.0, "examples_per_second": 100.0})
  progress.validation(100, 1.0, {"loss": 0.5, "accuracy": 0.9})
  progress.close()
  err = capsys.readouterr().err
  assert "\r" in err and "100/100" in err
  assert err.count("\n") == 1, err  # the bar's own line, ended once at close
  assert not re.search(r"^step \d+/100", err, re.M)


def test_a_training_puts_back_the_signal_handlers_it_found():
  """A Jupyter kernel's SIGINT handler raises KeyboardInterrupt; after a training it must still be there."""
  def kernel_handler(signum, frame):
    del signum, frame

  before = signal.signal(signal.SIGINT, kernel_handler)
  try:
    stop = preemption.StopRequest()
    assert signal.getsignal(signal.SIGINT) == stop._handle  # pylint: disable=protected-access
    stop.restore()
    assert signal.getsignal(signal.SIGINT) is kernel_handler
  finally:
    signal.signal(signal.SIGINT, before)


def test_the_root_api_names_plots_and_explainer_lazily():
  import subprocess  # pylint: disable=g-import-not-at-top
  code = ("import sys, flaxforge; flaxforge.plots.training_curves; "
          "print(sorted(m for m in ('jax', 'flax', 'matplotlib') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
  assert out.strip() == "['matplotlib']"  # figures need no JAX
  from flaxforge.inference.explain import Explainer  # pylint: disable=g-import-not-at-top
  assert flaxforge.Explainer is Explainer and flaxforge.plots is plots


def test_a_second_interrupt_in_a_notebook_raises_instead_of_ending_the_kernel(monkeypatch, capsys):
  """A command's second signal ends its process at once (test_preemption); a kernel's must not: it holds the
  user's other work. The first interrupt asks for the checkpointed stop, the second raises KeyboardInterrupt."""
  monkeypatch.setattr(progress_lib, "in_notebook", lambda: True)
  stop = preemption.StopRequest(on_disk=lambda: "the last complete checkpoint is step 40 in runs/t")
  try:
    stop.started()
    signal.raise_signal(signal.SIGINT)
    assert stop.requested and stop.signal_name == "SIGINT"
    with pytest.raises(KeyboardInterrupt):
      signal.raise_signal(signal.SIGINT)
  finally:
    stop.restore()
  assert capsys.readouterr().err == ("second SIGINT: aborting now; the last complete checkpoint is step 40 in "
                                     "runs/t. Call flaxforge.train again to resume.\n")


def test_a_training_that_fails_leaves_no_lease_in_the_process_that_lives_on(tmp_path):
  """A kernel outlives its trainings: a run that ends with an error gives up its work directory's lease then,
  not at the process's exit, so a `flaxforge train` in a terminal is not refused while the kernel lives."""
  from flaxforge.launch.configs import text_csv  # pylint: disable=g-import-not-at-top
  config = text_csv.get_config()
  config.data.path = str(tmp_path / "missing.csv")
  with pytest.raises(UserError, match="missing.csv not found"):
    flaxforge.train(config, str(tmp_path / "run"))
  assert not (tmp_path / "run" / "lease.json").exists()
