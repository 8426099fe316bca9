"""The package's shape: one installed name, layers that import only downwards, and no import circles (imports
inside functions included: a deferred import still ties two modules together)."""
import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
# A layer may import itself and the layers listed after it.
BELOW = {
    "launch": {"launch", "serving", "inference", "planning", "trainer", "data", "models", "core"},
    "serving": {"serving", "inference", "trainer", "data", "models", "core"},
    "inference": {"inference", "trainer", "data", "models", "core"},
    "planning": {"planning", "trainer", "data", "models", "core"},
    "trainer": {"trainer", "data", "models", "core"},
    "data": {"data", "core"},
    "models": {"models", "core"},
    "core": {"core"},
}
OLD_TOP_LEVEL = {"launch", "serving", "inference", "planning", "trainer", "data", "models", "core"}


def _imports(path: pathlib.Path):
  """(line, imported module) for every import in a file, functions' bodies included."""
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      yield from ((node.lineno, a.name) for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      yield node.lineno, node.module
      if node.module == "flaxforge":  # from flaxforge import data
        yield from ((node.lineno, f"flaxforge.{a.name}") for a in node.names)


def _module(path: pathlib.Path) -> str:
  """'flaxforge.trainer.loop' for trainer/loop.py, 'flaxforge.models.hf' for models/hf/__init__.py."""
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(("flaxforge", *(parts[:-1] if parts[-1] == "__init__" else parts)))


def _graph(paths) -> dict[str, set[str]]:
  """Each module's flaxforge imports: `from flaxforge.x import y` counts as flaxforge.x.y where that is a
  module (a package's submodule, not the package's own __init__), else as flaxforge.x."""
  modules = {_module(p): p for p in paths}
  graph = {name: set() for name in modules}
  for name, path in modules.items():
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        graph[name].update(a.name for a in node.names)
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        graph[name].update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names)
    graph[name] &= set(modules) - {name}
  return graph


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
  """The strongly connected components of more than one module (Tarjan's algorithm)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = set()
      while not component or v not in component:
        component.add(stack.pop())
      on_stack.difference_update(component)
      if len(component) > 1:
        found.append(component)
  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def _library_files():
  return [REPO / "__init__.py"] + [p for layer in BELOW for p in sorted((REPO / layer).rglob("*.py"))]


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


def test_no_import_circles():
  circles = _circles(_graph(_library_files()))
  assert not circles, "\n".join(" <-> ".join(sorted(c)) for c in circles)


def test_the_walk_sees_a_violation(tmp_path):
  """The checks above would fail on an upward import or a circle (guards the walker itself)."""
  bad = tmp_path / "bad.py"
  bad.write_text("def f():\n  from flaxforge.trainer import loop\n")
  assert [m for _, m in _imports(bad)] == ["flaxforge.trainer"]
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
  assert _circles(graph) == [{"a", "b", "c"}]
