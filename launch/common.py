"""What every entry point shares: --config/--workdir flags, help, multi-process start-up, one-line errors."""
import difflib
import json
import os
import re
import sys
import traceback

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from flaxforge.core import config_fields, run_config
from flaxforge.core.errors import UserError
from flaxforge.launch import allocator, configs
from flaxforge.trainer import fields

_STORED_CONFIG = os.path.join(configs.FOLDER, "_stored.py")  # a run's own config.json, as FILE:WORKDIR
_HELP = ("--help", "-h", "--helpshort")

WORKDIR = flags.DEFINE_string("workdir", None, "Work directory: checkpoints, metrics, config (local or gs://).")
VERBOSE = flags.DEFINE_bool("verbose", False, "Show full tracebacks and debug logs.")
COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                  "host:port of process 0, for multi-process runs not started by TPU or SLURM.")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job (with --coordinator_address).")
PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")


def _resolve_config_argv(argv: list[str]):
  """Rewrites --config=NAME (or --config NAME) in place to the config's file, before absl reads it."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      argv[i] = "--config=" + configs.path(arg[len("--config="):])
    elif arg == "--config" and i + 1 < len(argv):
      argv[i + 1] = configs.path(argv[i + 1])


def _stored_run_config(argv: list[str]) -> str | None:
  """Without --config, a --workdir that holds a run gives its own config (launch/configs/_stored.py)."""
  if any(a == "--config" or a.startswith("--config=") for a in argv[1:]):
    return None
  given = [v for a, v in zip(argv, argv[1:] + [""]) if a == "--workdir"]
  given += [a[len("--workdir="):] for a in argv if a.startswith("--workdir=")]
  workdir = given[-1] if given else ""
  if not run_config.exists(workdir):
    return None
  return f"{_STORED_CONFIG}:{workdir}"


def define_config_flag():
  """--config=NAME|FILE plus --config.FIELD=VALUE overrides (ml_collections may read them while defining).
  Without --config: the run's own config when --workdir holds one (a resume), else the default config."""
  try:
    _resolve_config_argv(sys.argv)
  except UserError as e:
    _fail(str(e))
  try:
    return config_flags.DEFINE_config_file(
        "config", _stored_run_config(sys.argv) or configs.DEFAULT,
        f"A shipped config ({', '.join(configs.shipped())}) or a config file; default: the run's own in "
        "--workdir, else default")
  except Exception as e:  # pylint: disable=broad-except
    _fail(_flag_error_line(e))


def _fail(message: str, code: int = 2):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def _flag_error_line(e: Exception) -> str:
  """One line for a flag or config mistake: an unknown field (with ml_collections' suggestion) or a bad value."""
  text = str(e)
  if isinstance(e, (AttributeError, KeyError)):
    field = (re.findall(r"[A-Za-z_]\w*", text) or ["?"])[0]
    given = [a for a in sys.argv[1:] if re.match(rf"--config\.(.*\.)?{field}(=|\.|$)", a)]
    suggestion = re.search(r'Did you mean "(\w+)"', text)
    return (f"unknown config field {field!r} in {given[0] if given else 'the config overrides'}"
            f"{f' (did you mean {suggestion.group(1)!r}?)' if suggestion else ''}; "
            "flaxforge train --help lists the fields a config has")
  return (text.strip().splitlines() or [type(e).__name__])[0] + " (see --help: what each flag and config field takes)"


def _parse(argv):
  """absl flag parsing whose failures (unknown or mistyped config fields) are one line and exit 2; --help
  prints this command's flags and its config's fields (absl's own flags stay under --helpfull)."""
  wanted_help = any(a in _HELP for a in argv[1:])
  try:
    parsed = flags.FLAGS([a for a in argv if a not in _HELP])
  except Exception as e:  # pylint: disable=broad-except
    _fail(_flag_error_line(e))
  if wanted_help:
    print(help_text(_usage[0]))
    sys.exit(0)
  return parsed


_usage = [""]  # the running command's docstring, set by run()


def help_text(usage: str) -> str:
  """The command's own flags, then (for commands with --config) every field of the config, by section."""
  lines = [usage.strip(), "", "flags:"]
  ours = [f for module, fs in flags.FLAGS.flags_by_module_dict().items() for f in fs
          if "flaxforge" in module or module in (sys.argv[0], "__main__")]
  for flag in sorted({f.name: f for f in ours}.values(), key=lambda f: (f.name == "verbose", f.name != "workdir")):
    default = "" if flag.default in (None, "") or flag.name == "config" else f" (default: {flag.default})"
    lines.append(f"  --{flag.name:<22}{flag.help.splitlines()[0]}{default}")
  lines.append(f"  --{'helpfull':<22}also absl's logging and debugging flags")
  config = flags.FLAGS["config"].value if "config" in flags.FLAGS else None
  if config is not None:
    source = flags.FLAGS["config"].config_filename
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


def use_xla_flags(flags: str):
  """Appends a config's `xla_flags` to XLA_FLAGS. XLA reads them when JAX starts its backends, so this
  runs before anything touches a device."""
  current = os.environ.get("XLA_FLAGS", "")
  missing = [f for f in (flags or "").split() if f not in current.split()]
  if missing:
    os.environ["XLA_FLAGS"] = " ".join([current, *missing]).strip()


def use_workdir_xla_flags(workdir: str):
  """The run's own `xla_flags` (from its config.json), so eval and predict compile the model as training did."""
  from flaxforge.trainer import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  try:
    flags = workdir_lib.load_config(workdir_lib.resolve(workdir)).get("xla_flags", "")
  except Exception:  # pylint: disable=broad-except  (a missing or bad workdir is reported by the restore)
    return
  use_xla_flags(flags)


def init_distributed():
  """Joins the JAX cluster when this is one of several processes; a no-op for a single process."""
  import jax  # pylint: disable=g-import-not-at-top
  heartbeat = int(os.environ.get("FLAXFORGE_HEARTBEAT_S", "100"))
  if COORDINATOR.value:
    n, i = NUM_PROCESSES.value, PROCESS_ID.value
    if n is None or i is None or not 0 <= i < n:
      raise UserError(f"--coordinator_address needs --num_processes=N and --process_id=I with 0 <= I < N "
                      f"(got N={n}, I={i})")
    jax.distributed.initialize(COORDINATOR.value, n, i, heartbeat_timeout_seconds=heartbeat)
  elif (os.environ.get("FLAXFORGE_DISTRIBUTED") == "1" or int(os.environ.get("SLURM_NTASKS", "1")) > 1
        or "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")):
    # JAX finds the coordinator itself on SLURM and TPU VMs; a TPU VM's worker list is in its metadata, not
    # the environment, so launch/tpu_vm.sh sets FLAXFORGE_DISTRIBUTED=1.
    jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat)


def run(main):
  """Runs an absl main: a UserError (or a bad flag) prints one line naming the fix and exits 2."""
  allocator.reexec_once()  # before JAX starts: the malloc set-up is read from the environment
  _usage[0] = sys.modules[main.__module__].__doc__ or ""

  def wrapped(argv):
    if not VERBOSE.value:
      absl_logging.set_verbosity(absl_logging.ERROR)
    try:
      return main(argv)
    except UserError as e:
      if VERBOSE.value:
        traceback.print_exc()
      _fail(str(e))

  try:
    app.run(wrapped, flags_parser=_parse)
  except BrokenPipeError:  # the reader left (`flaxforge train --help | head`): stop quietly, as cat does
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python flushes stdout again at exit
    sys.exit(1)


def print_result(result: dict, *lines: str):
  """The command's result as one JSON line, last, after `lines`; from process 0 only (one answer per job)."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    for line in lines:
      print(line)
    print(json.dumps(result))


def one_checkpoint(step, best: bool):
  """Refuses --best together with --step: each names a checkpoint."""
  if best and step is not None:
    raise UserError(f"--best and --step={step} each choose a checkpoint; pass only one of them")


def require_workdir() -> str:
  if not WORKDIR.value:
    raise UserError("--workdir is required: where this run's checkpoints and metrics live, e.g. --workdir=runs/digits")
  return WORKDIR.value
