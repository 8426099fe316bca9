"""What every entry point shares: the --workdir and cluster flags, XLA flags, multi-process start-up, the run
wrapper (one-line errors, exit 2) and the result line. The config flag and --help: launch/flags.py."""
import functools
import json
import os
import sys
import traceback

from absl import app, flags
from absl import logging as absl_logging

from flaxforge.core import run_config
from flaxforge.core.errors import UserError
from flaxforge.launch import allocator
from flaxforge.launch import flags as cli_flags
from flaxforge.trainer import fields

WORKDIR = flags.DEFINE_string("workdir", None, "Work directory: checkpoints, metrics, config (local or gs://).")
VERBOSE = flags.DEFINE_bool("verbose", False, "Show full tracebacks and debug logs.")
COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                  "host:port of process 0, for multi-process runs not started by TPU or SLURM.")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job (with --coordinator_address).")
PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")


def use_xla_flags(flags: str):
  """Appends a config's `xla_flags` to XLA_FLAGS. XLA reads them when JAX starts its backends, so this
  runs before anything touches a device."""
  current = os.environ.get("XLA_FLAGS", "")
  missing = [f for f in (flags or "").split() if f not in current.split()]
  if missing:
    os.environ["XLA_FLAGS"] = " ".join([current, *missing]).strip()


def use_workdir_xla_flags(workdir: str):
  """The run's own `xla_flags` (from its config.json), so eval and predict compile the model as training did."""
  try:
    run = fields.Run.of(run_config.read(workdir))
  except Exception:  # pylint: disable=broad-except  (a missing or bad workdir is reported by the restore)
    return
  use_xla_flags(run.xla_flags)


def use_compilation_cache():
  """JAX's persistent compilation cache, before JAX starts: a program an earlier command compiled (a run's
  predict or eval step, the server's batch sizes, the train step of a resumed run) is read back instead of
  compiled again. In $JAX_COMPILATION_CACHE_DIR, else $XDG_CACHE_HOME/flaxforge/jax (~/.cache/...); the least
  recently used entries go past 2 GB. The same variables (JAX's own) change any of it; a directory of "" turns
  it off. Programs that compile in under 0.2 s are not kept."""
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(cache, "flaxforge", "jax"))
  os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


def start_process():
  """What must be in the environment before JAX starts: the compilation cache and the malloc set-up (applied by
  re-executing the process once: launch/allocator.py). `flaxforge COMMAND` calls it before importing the
  command's module, so the process that is replaced has imported almost nothing."""
  use_compilation_cache()
  allocator.reexec_once()


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
  """Runs an absl main: a UserError (or a bad flag) prints one line naming the fix and exits 2; --help shows
  the command's docstring, flags and config fields (launch/flags.py)."""
  start_process()

  def wrapped(argv):
    if not VERBOSE.value:
      absl_logging.set_verbosity(absl_logging.ERROR)
    try:
      return main(argv)
    except UserError as e:
      if VERBOSE.value:
        traceback.print_exc()
      cli_flags.fail(str(e))

  usage = sys.modules[main.__module__].__doc__ or ""
  try:
    app.run(wrapped, flags_parser=functools.partial(cli_flags.parse, usage=usage))
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


class CheckpointChoice:
  """--step, --best and --latest: which checkpoint a command uses. Without them trainer/restore.py's
  `choose_step` picks the step the run tested (early stopping's best, else the newest)."""

  def __init__(self, *, best: bool = True):
    self._step = flags.DEFINE_integer("step", None, "Checkpoint step (default: the step the run tested: early "
                                      "stopping's best, else the newest).")
    self._best = flags.DEFINE_bool("best", False, "Use the checkpoint with the best validation metric.") if best \
        else None
    self._latest = flags.DEFINE_bool("latest", False, "Use the newest checkpoint, even after early stopping.")

  def chosen(self) -> tuple[int | None, bool]:
    """(step, best) for trainer/restore.py: step -1 is its LATEST. UserError when two flags each choose."""
    step, best, latest = self._step.value, self._best is not None and self._best.value, self._latest.value
    named = [f for f, on in (("--best", best), (f"--step={step}", step is not None), ("--latest", latest)) if on]
    if len(named) > 1:
      raise UserError(f"{' and '.join(named)} each choose a checkpoint; pass only one of them")
    return (-1 if latest else step), best


def require_workdir() -> str:
  if not WORKDIR.value:
    raise UserError("--workdir is required: where this run's checkpoints and metrics live, e.g. --workdir=runs/digits")
  return WORKDIR.value
