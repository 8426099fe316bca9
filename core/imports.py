"""Built-in names or the user's own modules: `my_models.convnet` (importable from the current folder) or a
file path `path/to/convnet.py`, checked for the function the trainer calls. A run records a module of the
user's folder as its file (`recorded`), so eval, predict, serve and export find it from any folder."""
import importlib
import importlib.util
import os
import pathlib
import sys
import zlib

from flaxforge.core import paths
from flaxforge.core.errors import UserError


class NotFound(UserError):
  """The module a name or file names cannot be found (`name` as given). The message names the config flag; a
  command that takes no config flag (eval, predict) says its own fix instead."""

  def __init__(self, message: str, name: str):
    super().__init__(message)
    self.name = name


def recorded(name: str, builtins: dict[str, str]) -> str:
  """`name` as a run records it: a built-in name, a Python function's `module:function` (flaxforge.train's
  model=) and an installed module as given; a file path absolute (as every path field: core/paths.py); a
  module found in the current folder (`my_models.convnet`) as its file's absolute path. A name that cannot be
  found is kept: building it says why."""
  if not name or name in builtins or ":" in name:
    return name
  if name.endswith(".py") or os.sep in name:
    return paths.expand(name)
  _with_current_folder()
  try:
    spec = importlib.util.find_spec(name)
  except (ImportError, ValueError):
    return name
  origin = getattr(spec, "origin", None) or ""
  inside = os.path.abspath(origin).startswith(os.path.join(os.getcwd(), ""))
  return os.path.abspath(origin) if origin.endswith(".py") and inside else name


def _with_current_folder():
  if os.getcwd() not in sys.path and "" not in sys.path:
    sys.path.append(os.getcwd())  # the console script's path lacks the user's folder; `python -m` has it


def resolve(name: str, builtins: dict[str, str], function: str, flag: str, what: str):
  """The module for `name` (a key of `builtins`, a dotted module path or a .py file) that defines `function`.

  `flag` is the config field that names it ("model.name") and `what` the kind ("model"), for the one-line
  UserError raised when the module cannot be found, or lacks `function`.
  """
  if name in builtins:
    return importlib.import_module(builtins[name])
  module = _from_file(name, flag) if name.endswith(".py") or os.sep in name else _from_path(name, builtins, flag, what)
  if not callable(getattr(module, function, None)):
    raise UserError(f"module {name!r} ({module.__file__}) has no function {function}(); define it there or fix "
                    f"--config.{flag}")
  return module


def _from_path(name: str, builtins: dict[str, str], flag: str, what: str):
  _with_current_folder()
  try:
    return importlib.import_module(name)
  except ModuleNotFoundError as e:
    if e.name and name.startswith(e.name):  # the module itself is missing, not one it imports
      raise NotFound(f"unknown {what} {name!r}: no such module in {os.getcwd()} or the installed packages; "
                     f"set --config.{flag} to one of {', '.join(builtins)}, a module path (my_pkg.my_module) "
                     "or a file (path/to/file.py)", name) from None
    raise


def _package_module(path: pathlib.Path) -> tuple[str, str]:
  """(the folder above its packages, the dotted name) of a .py file inside regular packages (folders with an
  __init__.py); ("", "") for a file outside any."""
  parts, folder = [path.stem], path.parent
  while (folder / "__init__.py").is_file():
    parts.insert(0, folder.name)
    folder = folder.parent
  return (str(folder), ".".join(parts)) if len(parts) > 1 else ("", "")


def _from_file(name: str, flag: str):
  path = pathlib.Path(name).expanduser().resolve()
  if not path.is_file():
    raise NotFound(f"{name} not found; set --config.{flag} to an existing .py file or a module path", name)
  root, dotted = _package_module(path)
  if dotted:  # imported by its dotted name, so that its relative and package imports work as at train time
    if root not in sys.path:
      sys.path.append(root)
    try:
      module = importlib.import_module(dotted)
    except ModuleNotFoundError as e:
      if not (e.name and dotted.startswith(e.name)):
        raise  # a module the user's module imports is missing: theirs to see
      module = None  # an installed package of that name lacks it: load the file itself
    if module is not None and pathlib.Path(module.__file__).resolve() == path:
      return module  # else another installed module has that name: load the file itself
  module_name = f"flaxforge_user_{path.stem}_{zlib.crc32(str(path).encode()):08x}"
  if module_name in sys.modules:
    return sys.modules[module_name]
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[module_name] = module  # before running it: dataclasses and pickling look the module up
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[module_name]
    raise
  return module
