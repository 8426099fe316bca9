"""Built-in names or the user's own modules: `my_models.convnet` (importable from the current folder) or a
file path `path/to/convnet.py`, checked for the function the trainer calls."""
import importlib
import importlib.util
import os
import pathlib
import sys
import zlib

from flaxforge.core.errors import UserError


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
  if os.getcwd() not in sys.path and "" not in sys.path:
    sys.path.append(os.getcwd())  # the console script's path lacks the user's folder; `python -m` has it
  try:
    return importlib.import_module(name)
  except ModuleNotFoundError as e:
    if e.name and name.startswith(e.name):  # the module itself is missing, not one it imports
      raise UserError(f"unknown {what} {name!r}: no such module in {os.getcwd()} or the installed packages; "
                      f"set --config.{flag} to one of {', '.join(builtins)}, a module path (my_pkg.my_module) "
                      "or a file (path/to/file.py)") from None
    raise


def _from_file(name: str, flag: str):
  path = pathlib.Path(name).expanduser().resolve()
  if not path.is_file():
    raise UserError(f"{name} not found; set --config.{flag} to an existing .py file or a module path")
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
