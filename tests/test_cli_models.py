"""Mistakes that need a trained text classifier or language model, made with the `flaxforge` command:
predict refuses a blank input by the line naming it and reads a table's text column; generate refuses a
length past the model's context, and predict on a language model points to generate."""
import json
import re

import pytest

from conftest import flaxforge, one_line

pytestmark = pytest.mark.slow  # subprocess CLI runs


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
  folder = tmp_path_factory.mktemp("classifier")
  rows = ["text,label"] + [f"{w} {w} the game,{'sport' if i % 2 else 'food'}"
                           for i, w in enumerate(["goal", "bread"] * 40)]
  (folder / "notes.csv").write_text("\n".join(rows) + "\n")
  proc = flaxforge("train", "--config=text_csv", f"--workdir={folder / 'run'}", "--config.data.path=notes.csv",
                   f"--config.data.data_dir={folder / 'tfds'}", "--config.train.num_epochs=2", "--config.data.batch_size=8",
                   "--config.train.progress_bar=false", cwd=folder)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return folder


def test_a_blank_input_is_refused_by_the_line_naming_it(classifier):
  """One rule for empty inputs (inference/inputs.py): refused in one line, never predicted; the server and the
  Python Predictor refuse them alike (test_serving_http.py, test_api.py)."""
  (classifier / "texts.txt").write_text("goal goal\n\n   \nbread\n")
  blank = "is a blank text: there is nothing to predict from; remove it"
  assert f"texts.txt line 2 {blank}" in one_line(
      flaxforge("predict", "--workdir=run", "--input=texts.txt", "--json", "--top_k=1", cwd=classifier))
  assert f"stdin line 2 {blank}" in one_line(
      flaxforge("predict", "--workdir=run", "--top_k=1", cwd=classifier, stdin="goal\n\nbread\n"))
  assert f"argument 2 {blank}" in one_line(flaxforge("predict", "--workdir=run", "goal", " ", cwd=classifier))
  (classifier / "texts.txt").write_text("goal goal\nbread\n")
  out = flaxforge("predict", "--workdir=run", "--input=texts.txt", "--json", "--top_k=1", cwd=classifier)
  assert out.returncode == 0, out.stderr[-2000:]
  assert [json.loads(line)["text"] for line in out.stdout.strip().splitlines()] == ["goal goal", "bread"]


def test_a_table_of_texts_gives_the_texts_of_the_runs_column(classifier):
  """predict --input=FILE.csv/.jsonl on a text run reads its text column (not the header and the label as text)."""
  (classifier / "new.csv").write_text('label,text\nfood,"goal goal"\nsport,"bread, bread"\n')
  (classifier / "new.jsonl").write_text('{"text": "goal goal"}\n{"text": "bread, bread"}\n')
  for name in ("new.csv", "new.jsonl"):
    out = flaxforge("predict", "--workdir=run", f"--input={name}", "--json", "--top_k=1", cwd=classifier)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.strip().splitlines()]
    assert [r["text"] for r in rows] == ["goal goal", "bread, bread"]
    assert [r["top"][0]["label"] for r in rows] == ["food", "sport"]  # as the fixture labels them
  (classifier / "empty.csv").write_text('label,text\nfood,"goal goal"\n?,\n')
  assert "empty.csv row 2 is a blank text" in one_line(
      flaxforge("predict", "--workdir=run", "--input=empty.csv", cwd=classifier))
  (classifier / "other.csv").write_text("body\ngoal\n")
  line = one_line(flaxforge("predict", "--workdir=run", "--input=other.csv", cwd=classifier))
  assert "column 'text' not found in other.csv; columns are: body; give the file a 'text' column" in line


def test_generate_refuses_a_length_past_the_context(tiny_gpt_run):
  """The session's tiny GPT (conftest.py tiny_gpt_run: windows of 32 bytes, 150 steps)."""
  folder = tiny_gpt_run.folder
  assert re.search(r"^step 150/150 \(100%\) loss [\d.]+ examples/s [\d,]+ tokens/s [\d,]+ ETA 00:00:00$",
                   tiny_gpt_run.trained.stderr, re.M), tiny_gpt_run.trained.stderr[-2000:]  # sequence models: tokens/s
  line = one_line(flaxforge("generate", "--workdir=run", "--prompt=the cat", "--max_new_tokens=100000", cwd=folder))
  assert ("the prompt (7 bytes) plus --max_new_tokens=100000 exceed the model's context of 32 tokens; use "
          "--max_new_tokens=25 or less") in line
  assert flaxforge("generate", "--workdir=run", "--prompt=the cat", "--max_new_tokens=25", cwd=folder).returncode == 0
  assert "language model: it completes text rather than predicting labels; use flaxforge generate" in one_line(
      flaxforge("predict", "--workdir=run", "the cat", cwd=folder))
