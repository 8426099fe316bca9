"""The package's shape: one installed name, and layers that import only downwards."""
import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
# A layer may import itself and the layers listed after it.
BELOW = {
    "launch": {"launch", "serving", "planning", "trainer", "data", "models", "core"},
    "serving": {"serving", "planning", "trainer", "data", "models", "core"},
    "planning": {"planning", "trainer", "data", "models", "core"},
    "trainer": {"trainer", "data", "models", "core"},
    "data": {"data", "core"},
    "models": {"models", "core"},
    "core": {"core"},
}
OLD_TOP_LEVEL = {"launch", "planning", "trainer", "data", "models", "core"}


def _imports(path: pathlib.Path):
  """(line, imported module) for every import in a file, functions' bodies included."""
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      yield from ((node.lineno, a.name) for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      yield node.lineno, node.module
      if node.module == "flaxforge":  # from flaxforge import data
        yield from ((node.lineno, f"flaxforge.{a.name}") for a in node.names)


def test_no_layer_imports_a_higher_one():
  wrong = []
  for layer, allowed in BELOW.items():
    for path in sorted((REPO / layer).rglob("*.py")):
      for line, module in _imports(path):
        parts = module.split(".")
        if parts[0] in OLD_TOP_LEVEL:
          wrong.append(f"{path.relative_to(REPO)}:{line} imports {module}: use flaxforge.{module}")
        elif parts[0] == "flaxforge" and len(parts) > 1 and parts[1] in BELOW and parts[1] not in allowed:
          wrong.append(f"{path.relative_to(REPO)}:{line} ({layer}) imports {module}, a higher layer")
  assert not wrong, "\n".join(wrong)


def test_the_walk_sees_a_violation(tmp_path):
  """The check above would fail on an upward import (guards the walker itself)."""
  bad = tmp_path / "bad.py"
  bad.write_text("def f():\n  from flaxforge.trainer import loop\n")
  assert [m for _, m in _imports(bad)] == ["flaxforge.trainer"]
