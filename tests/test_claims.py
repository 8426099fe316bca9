"""Every figure README.md and BENCHMARKS.md's first screen state is recomputed from its raw record in
benchmarks/results/ (benchmarks/claims.py), and every record there is whole."""
import importlib.util
import json
import shutil

import pytest

from conftest import REPO


def _load(name):
  spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", REPO / "benchmarks" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def claims():
  return _load("claims")


def test_every_stated_figure_agrees_with_its_record(claims):
  assert claims.problems() == []


def test_an_edited_figure_and_an_unrecorded_one_are_caught(claims, tmp_path, monkeypatch):
  """The negative control: the same check on copies of the two documents, one figure edited by hand and one
  added without a record."""
  for doc in ("README.md", "BENCHMARKS.md"):
    shutil.copy(REPO / doc, tmp_path / doc)
  readme = (tmp_path / "README.md").read_text()
  edited = "that reaches 0.857 test accuracy"
  assert edited in readme
  (tmp_path / "README.md").write_text(readme.replace(edited, "that reaches 0.867 test accuracy").replace(
      "## Layout", "The layout loads 0.42 s faster.\n\n## Layout"))
  monkeypatch.setattr(claims, "REPO", tmp_path)
  found = claims.problems()
  assert len(found) == 2, found
  assert "states 0.867; its record (accuracy_2026-11-29.jsonl) gives 0.857143" in found[0]
  assert "'0.42 s'" in found[1] and "has no record" in found[1]


def test_every_record_is_whole_json():
  for path in sorted((REPO / "benchmarks" / "results").glob("*.json*")):
    for number, line in enumerate(path.read_text().splitlines(), 1):
      if line.strip():
        try:
          json.loads(line)
        except ValueError:
          pytest.fail(f"{path.name} line {number} is not whole JSON: {line[-80:]!r}")


def test_records_are_appended_whole(tmp_path):
  records = _load("records")
  path = tmp_path / "r.jsonl"
  path.write_text('{"a": 1}')  # a last line without its newline
  records.append(path, [{"b": 2}, {"c": [3]}])
  assert [json.loads(l) for l in path.read_text().splitlines()] == [{"a": 1}, {"b": 2}, {"c": [3]}]
  assert [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]  # the temporary file was renamed
