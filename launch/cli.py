"""The `flaxforge` command: `flaxforge COMMAND [flags]` runs flaxforge.launch.COMMAND's main, exactly as
`python -m flaxforge.launch.COMMAND [flags]` does. A new command is a module with `main(argv)` and a name
added to COMMANDS."""
import ast
import difflib
import importlib
import importlib.util
import sys

COMMANDS = ("train", "eval", "predict", "generate", "export", "serve", "explain", "plan", "config", "data")


def _summary(name: str) -> str:
  """The first line of a command's docstring, read without importing it (each module defines its flags)."""
  with open(importlib.util.find_spec(f"flaxforge.launch.{name}").origin, encoding="utf-8") as f:
    doc = ast.get_docstring(ast.parse(f.read())) or ""
  return doc.splitlines()[0].split(":")[0] if doc else ""


def usage() -> str:
  lines = ["usage: flaxforge COMMAND [flags]   (flaxforge COMMAND --help lists a command's flags and config fields)",
           "", "commands:"]
  lines += [f"  {name:<10} {_summary(name)}" for name in COMMANDS]
  return "\n".join(lines)


def main():
  args = sys.argv[1:]
  if not args or args[0] in ("-h", "--help", "help"):
    print(usage(), file=sys.stdout if args else sys.stderr)
    sys.exit(0 if args else 2)
  name = args[0]
  if name not in COMMANDS:
    guess = difflib.get_close_matches(name, COMMANDS, n=1)
    print(f"error: unknown command {name!r}{f' (did you mean {guess[0]!r}?)' if guess else ''}; commands: "
          f"{', '.join(COMMANDS)}", file=sys.stderr)
    sys.exit(2)
  sys.argv = [f"flaxforge {name}", *args[1:]]
  from flaxforge.launch import common  # pylint: disable=g-import-not-at-top
  common.start_process()  # re-executes once, before the command's module imports anything more
  module = importlib.import_module(f"flaxforge.launch.{name}")
  common.run(module.main)


if __name__ == "__main__":
  main()
