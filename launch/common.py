"""What every entry point shares: --config/--workdir flags, multi-process start-up, and one-line errors."""
import os
import sys
import traceback

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from trainer.errors import UserError

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "default.py")

WORKDIR = flags.DEFINE_string("workdir", None, "Work directory: checkpoints, metrics, config (local or gs://).")
VERBOSE = flags.DEFINE_bool("verbose", False, "Show full tracebacks and debug logs.")
COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                  "host:port of process 0, for multi-process runs not started by TPU or SLURM.")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job (with --coordinator_address).")
PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")


def define_config_flag():
  """--config=FILE plus --config.FIELD=VALUE overrides (which ml_collections reads while defining)."""
  try:
    return config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Config file (ml_collections), fields "
                                           "overridable as --config.optimizer.learning_rate=0.01.")
  except (AttributeError, KeyError) as e:
    field = str(e).strip("\"'")
    given = [a for a in sys.argv[1:] if a.startswith("--config.") and field in a.split("=")[0]]
    _fail(f"unknown config field {field!r} in {given[0] if given else 'the overrides'}; "
          "see launch/configs/base.py for the fields a config has")
  except Exception as e:  # pylint: disable=broad-except  (a config file that does not load)
    _fail(f"cannot load the config: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def _fail(message: str, code: int = 2):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def _parse(argv):
  """absl flag parsing whose failures (unknown or mistyped config fields) are one line and exit 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0] + " (see --helpfull for the flags and the config file for its fields)")


def init_distributed():
  """Joins the JAX cluster when this is one of several processes; a no-op for a single process."""
  import jax  # pylint: disable=g-import-not-at-top
  if COORDINATOR.value:
    jax.distributed.initialize(COORDINATOR.value, NUM_PROCESSES.value, PROCESS_ID.value,
                               heartbeat_timeout_seconds=int(os.environ.get("FLAXFORGE_HEARTBEAT_S", "100")))
  elif int(os.environ.get("SLURM_NTASKS", "1")) > 1 or "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
    jax.distributed.initialize()  # SLURM and multi-host TPU VMs are detected by JAX itself


def run(main):
  """Runs an absl main: a UserError (or a bad flag) prints one line naming the fix and exits 2."""

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
