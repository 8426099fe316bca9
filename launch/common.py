"""What every entry point shares: --config/--workdir flags, multi-process start-up, and one-line errors."""
import os
import re
import sys
import traceback

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from flaxforge.launch import allocator
from flaxforge.core.errors import UserError

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "default.py")

WORKDIR = flags.DEFINE_string("workdir", None, "Work directory: checkpoints, metrics, config (local or gs://).")
VERBOSE = flags.DEFINE_bool("verbose", False, "Show full tracebacks and debug logs.")
COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                  "host:port of process 0, for multi-process runs not started by TPU or SLURM.")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job (with --coordinator_address).")
PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")


def define_config_flag():
  """--config=FILE plus --config.FIELD=VALUE overrides (ml_collections may read them while defining)."""
  try:
    return config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Config file (ml_collections), fields "
                                           "overridable as --config.optimizer.learning_rate=0.01.")
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
            "see launch/configs/base.py for the fields a config has")
  return (text.strip().splitlines() or [type(e).__name__])[0] + " (see --helpfull, and the config file for its fields)"


def _parse(argv):
  """absl flag parsing whose failures (unknown or mistyped config fields) are one line and exit 2."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    _fail(_flag_error_line(e))


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

  def wrapped(argv):
    if not VERBOSE.value:
      absl_logging.set_verbosity(absl_logging.ERROR)
    try:
      return main(argv)
    except UserError as e:
      if VERBOSE.value:
        traceback.print_exc()
      _fail(str(e))

  app.run(wrapped, flags_parser=_parse)


def require_workdir() -> str:
  if not WORKDIR.value:
    raise UserError("--workdir is required: where this run's checkpoints and metrics live, e.g. --workdir=runs/digits")
  return WORKDIR.value
