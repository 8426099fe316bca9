"""The config flag of `train`, `eval` and `config`: --config=NAME|FILE plus --config.FIELD=VALUE overrides,
parsed with one-line errors, and --help rendered from the config's own fields.

Nothing here reads or rewrites the command line at import: `define_config_flag` only declares the flag, and
`parse` (the flags parser `common.run` hands absl) resolves a config name to its file, or supplies the run's
own config from --workdir, in the list it parses.
"""
import os
import re
import sys

from absl import flags as absl_flags
from ml_collections import config_flags

from flaxforge.core import config_fields, run_config
from flaxforge.core.errors import UserError
from flaxforge.launch import configs
from flaxforge.trainer import fields

_STORED_CONFIG = os.path.join(configs.FOLDER, "_stored.py")  # a run's own config.json, as FILE:WORKDIR
_HELP = ("--help", "-h", "--helpshort")
_ARGV = []  # the command line as parsed (config names resolved): where ml_collections finds the overrides


def define_config_flag():
  """--config=NAME|FILE plus --config.FIELD=VALUE overrides. Without --config: the run's own config when
  --workdir holds one (a resume), else the default config."""
  return config_flags.DEFINE_config_file(
      "config", None, f"A shipped config ({', '.join(configs.shipped())}) or a config file; default: the run's "
      "own in --workdir, else default", sys_argv=_ARGV)


def resolve_argv(argv: list[str]) -> list[str]:
  """`argv` with --config=NAME (or --config NAME) as the config's file and, without --config, the run's own
  config (a --workdir that holds a run) or the default one added first, where overrides may follow it."""
  argv = list(argv)
  if "config" not in absl_flags.FLAGS:  # a command without --config (eval, predict, ...)
    return argv
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      argv[i] = "--config=" + configs.path(arg[len("--config="):])
    elif arg == "--config" and i + 1 < len(argv):
      argv[i + 1] = configs.path(argv[i + 1])
  if not any(a == "--config" or a.startswith("--config=") for a in argv[1:]):
    argv.insert(1, f"--config={_stored_run_config(argv) or configs.DEFAULT}")
  return argv


def _stored_run_config(argv: list[str]) -> str | None:
  """The run's own config (launch/configs/_stored.py) when --workdir names a folder that holds a run."""
  given = [v for a, v in zip(argv, argv[1:] + [""]) if a == "--workdir"]
  given += [a[len("--workdir="):] for a in argv if a.startswith("--workdir=")]
  workdir = given[-1] if given else ""
  return f"{_STORED_CONFIG}:{workdir}" if run_config.exists(workdir) else None


def parse(argv: list[str], usage: str) -> list[str]:
  """absl flag parsing whose failures (unknown or mistyped config fields) are one line and exit 2; --help
  prints this command's flags and its config's fields, under `usage` (absl's own flags stay under --helpfull)."""
  wanted_help = any(a in _HELP for a in argv[1:])
  try:
    _ARGV[:] = resolve_argv([a for a in argv if a not in _HELP])
    parsed = absl_flags.FLAGS(_ARGV)
  except UserError as e:
    fail(str(e))
  except Exception as e:  # pylint: disable=broad-except
    fail(_flag_error_line(e, argv))
  if wanted_help:
    print(help_text(usage))
    sys.exit(0)
  return parsed


def fail(message: str, code: int = 2):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def _flag_error_line(e: Exception, argv: list[str]) -> str:
  """One line for a flag or config mistake: an unknown field (with ml_collections' suggestion, or the shipped
  configs that have it) or a bad value."""
  text = str(e)
  if isinstance(e, (AttributeError, KeyError)):
    field = (re.findall(r"[A-Za-z_]\w*", text) or ["?"])[0]
    given = [a for a in argv[1:] if re.match(rf"--config\.(.*\.)?{field}(=|\.|$)", a)]
    suggestion = re.search(r'Did you mean "(\w+)"', text)
    dotted = given[0][len("--config."):].partition("=")[0] if given else field
    fix = "flaxforge train --help lists the fields a config has" if suggestion else configs.unknown_field(dotted)
    return (f"unknown config field {field!r} in {given[0] if given else 'the config overrides'}"
            f"{f' (did you mean {suggestion.group(1)!r}?)' if suggestion else ''}; {fix}")
  return (text.strip().splitlines() or [type(e).__name__])[0] + " (see --help: what each flag and config field takes)"


def help_text(usage: str) -> str:
  """The command's own flags, then (for commands with --config) every field of the config, by section."""
  lines = [usage.strip(), "", "flags:"]
  ours = [f for module, fs in absl_flags.FLAGS.flags_by_module_dict().items() for f in fs
          if "flaxforge" in module or module in (sys.argv[0], "__main__")]
  for flag in sorted({f.name: f for f in ours}.values(), key=lambda f: (f.name == "verbose", f.name != "workdir")):
    default = "" if flag.default in (None, "") or flag.name == "config" else f" (default: {flag.default})"
    lines.append(f"  --{flag.name:<22}{flag.help.splitlines()[0]}{default}")
  lines.append(f"  --{'helpfull':<22}also absl's logging and debugging flags")
  config = absl_flags.FLAGS["config"].value if "config" in absl_flags.FLAGS else None
  if config is not None:
    source = absl_flags.FLAGS["config"].config_filename
    stored = _STORED_CONFIG + ":"
    source = f"the run's own: {source[len(stored):]}/config.json" if source.startswith(stored) else \
        os.path.basename(source)
    lines += ["", f"config fields ({source}); "
              "set any with --config.FIELD=VALUE, e.g. --config.data.batch_size=64:"]
    for title, described in config_fields.by_section(config, fields.sections_of(config)).items():
      lines.append(f" {title}")
      for name, value, description, allowed in described:
        shown = f"{name} = {value!r}"
        lines.append(f"  {shown:<36} {description}{f' [{allowed}]' if allowed else ''}")
  return "\n".join(lines)
