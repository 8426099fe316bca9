"""Test session set-up: 8 fake CPU devices stand in for an accelerator slice (set before JAX starts)."""
import os

FAKE_DEVICES = "--xla_force_host_platform_device_count=8"
# Compiling is most of an in-process test's time (BENCHMARKS.md, "2026-12-07: the suite"): in-process tests
# compile with LLVM at its lowest optimisation level and XLA:CPU's older loop emitters, which change how fast
# the code runs and its round-off, not what it computes. Commands the tests run (cli_env) compile as a user's do.
QUICK_COMPILE = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
IN_PROCESS_FLAGS = (FAKE_DEVICES, *QUICK_COMPILE)
os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *IN_PROCESS_FLAGS]).strip()
# The test extra brings libtpu (flaxforge plan compiles for TPUs), which, on a machine without a TPU, looks for
# one at every JAX start and prints warnings on stderr: the tests (and the commands they run) use the CPU.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Prepared datasets are kept between runs, one folder per pytest-xdist worker: two workers preparing the same
# dataset at once would race for its final folder.
TFDS_DIR = os.path.join(os.path.dirname(__file__), "..", ".pytest_tfds", os.environ.get("PYTEST_XDIST_WORKER", "main"))
os.environ.setdefault("TFDS_DATA_DIR", TFDS_DIR)
# The host's best matmul peak (trainer/flops.py cpu_peak) is kept beside the tests' data, not in ~/.cache.
os.environ.setdefault("FLAXFORGE_CPU_PEAK_CACHE", os.path.join(TFDS_DIR, "cpu_peak.json"))

import json  # pylint: disable=g-import-not-at-top,wrong-import-position
import pathlib  # pylint: disable=g-import-not-at-top,wrong-import-position
import subprocess  # pylint: disable=g-import-not-at-top,wrong-import-position
import sys  # pylint: disable=g-import-not-at-top,wrong-import-position
import time  # pylint: disable=g-import-not-at-top,wrong-import-position
import types  # pylint: disable=g-import-not-at-top,wrong-import-position

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.FLAGS.mark_as_parsed()  # Grain reads absl flags; tests run outside absl.app.run

REPO = pathlib.Path(__file__).resolve().parent.parent
FLAXFORGE = str(pathlib.Path(sys.executable).parent / "flaxforge")  # the command pip puts on the path


# A hang guard, not a speed check: the longest a test waits for a process that may hang by the very fault it
# looks for (a signal not handled, a launcher or collective that never returns), then fails instead of
# blocking CI. The waits it bounds take seconds, under a minute on a loaded 2-core machine.
HANG_GUARD_S = 600


def cli_env(devices: int = 1, **changes: str | None) -> dict[str, str]:
  """The environment of a command run as a user runs it: this one without IN_PROCESS_FLAGS (any other
  XLA_FLAGS stay), `devices` CPU devices (JAX_NUM_CPU_DEVICES, which JAX prefers to the XLA flag), then
  `changes` (None unsets a variable)."""
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if f not in IN_PROCESS_FLAGS]
  env = {**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_NUM_CPU_DEVICES": str(devices), **changes}
  return {k: v for k, v in env.items() if v is not None}


def run_module(*args) -> subprocess.CompletedProcess:
  """`python -m MODULE ARGS` from the repository as a user runs it (one CPU device), which must succeed."""
  proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=cli_env(), capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def flaxforge(*args, cwd, stdin=None) -> subprocess.CompletedProcess:
  """The `flaxforge` command run from `cwd` as a user runs it (one CPU device); its output captured."""
  return subprocess.run([FLAXFORGE, *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, input=stdin)


def one_line(proc: subprocess.CompletedProcess) -> str:
  """The single `error:` line of a refused command: exit status 2, one line on stderr, no traceback."""
  assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
  return lines[0]


def wait_until(done, proc: subprocess.Popen, what: str) -> None:
  """Polls `done()` every 10 ms while `proc` runs. Fails, naming `what`, when `proc` ends first (with the end
  of its stderr, if piped) or after HANG_GUARD_S."""
  deadline = time.monotonic() + HANG_GUARD_S
  while not done():
    if proc.poll() is not None:
      err = proc.communicate()[1] or ""
      err = err.decode(errors="replace") if isinstance(err, bytes) else err
      pytest.fail(f"{what}: the process ended first (status {proc.returncode}): {err[-2000:]}")
    if time.monotonic() > deadline:
      proc.kill()
      pytest.fail(f"{what}: not there after {HANG_GUARD_S} s (hang guard)")
    time.sleep(0.01)


@pytest.fixture(scope="session")
def tiny_gpt_run(tmp_path_factory) -> types.SimpleNamespace:
  """One tiny byte-level GPT per test session, trained with the `flaxforge` command as a user runs it, for the
  tests of what a trained language model does (generate, serving's completions, the commands' refusals): 600
  one-sentence documents ("the cat sat on the mat.", a .jsonl, so each ends with the separator byte), windows
  of 32 bytes, 150 steps, validations at 75 and 150, a train record every 25. `folder` holds `docs.jsonl` and
  the work directory `run` (`workdir`); `trained` is the training's CompletedProcess."""
  folder = tmp_path_factory.mktemp("tiny_gpt")
  (folder / "docs.jsonl").write_text("\n".join(json.dumps({"text": "the cat sat on the mat."}) for _ in range(600)))
  trained = flaxforge("train", "--config=gpt_text", "--workdir=run", "--config.data.path=docs.jsonl",
                      "--config.data.seq_len=32", "--config.model.size=tiny", "--config.train.num_steps=150",
                      "--config.train.eval_every_steps=75", "--config.train.log_every=25",
                      "--config.optimizer.warmup_steps=10", cwd=folder)
  assert trained.returncode == 0, trained.stderr[-3000:]
  return types.SimpleNamespace(folder=folder, workdir=folder / "run", trained=trained)


@pytest.fixture
def minilm() -> str:
  """The shared pretrained MiniLM (FLAXFORGE_MODELS/all-MiniLM-L6-v2, which .ci/run sets); skipped on a
  clone without it."""
  path = os.environ.get("FLAXFORGE_MODELS")
  if not path:
    pytest.skip("FLAXFORGE_MODELS is not set: the pretrained-model tests need the shared models folder")
  model = pathlib.Path(path) / "all-MiniLM-L6-v2"
  if not model.is_dir():
    pytest.fail(f"{model} is not a directory (FLAXFORGE_MODELS={path})")
  return str(model)


@pytest.fixture(scope="session")
def real_datasets() -> pathlib.Path:
  """The shared real datasets (FLAXFORGE_DATASETS, which .ci/run sets); skipped on a clone without them."""
  path = os.environ.get("FLAXFORGE_DATASETS")
  if not path:
    pytest.skip("FLAXFORGE_DATASETS is not set: the real-data tests need the shared datasets folder")
  if not pathlib.Path(path).is_dir():
    pytest.fail(f"FLAXFORGE_DATASETS={path} is not a directory")
  return pathlib.Path(path)


def checkpoint_arrays(workdir, step=None) -> tuple[int, list]:
  """(step, every array of the restored train state as numpy, RNG keys as their key data)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flaxforge.trainer import restore  # pylint: disable=g-import-not-at-top
  run = restore.restore(str(workdir), step=step)
  return run.step, [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
                    for x in jax.tree.leaves(run.state)]


@pytest.fixture(scope="session")
def bow_20ng_run(real_datasets, tmp_path_factory) -> types.SimpleNamespace:
  """The README's better 20 Newsgroups model, trained once per session as a user trains it: `text_bow_20ng`
  with its defaults on the real archive. `workdir` is the run; `result` the test metrics of its last line.
  Shared by the accuracy-and-predict test (test_text_e2e.py) and explain's (test_explain.py)."""
  folder = tmp_path_factory.mktemp("bow_20ng")
  proc = run_module("flaxforge.launch.train", "--config=launch/configs/text_bow_20ng.py", f"--workdir={folder / 'run'}",
                    f"--config.data.manual_dir={real_datasets / '20newsgroups'}", f"--config.data.data_dir={folder / 'tfds'}",
                    "--config.train.progress_bar=false")
  return types.SimpleNamespace(workdir=folder / "run", result=json.loads(proc.stdout.strip().splitlines()[-1]))


# Session runs that several test files read; under pytest-xdist (`-n 2`, README) the files that read one run in
# the same worker, so it is trained once.
SHARED_RUNS = ("tiny_gpt_run", "bow_20ng_run")
# The groups that take longest (a full `-n 2` run's --durations, 2026-12-06), handed out first so that no long
# group starts near the end while the other worker idles: bow_20ng_run holds BERT from scratch (3 epochs), the
# bag-of-words run and its explanations, together about 10 minutes. The other groups follow, those with the
# most tests first (xdist's own order).
LONGEST_FIRST = ("bow_20ng_run", "test_hf_classifiers.py", "test_finetune.py", "test_multiprocess.py",
                 "test_resume.py", "test_examples.py", "test_hf_decoders.py", "test_plan.py", "tiny_gpt_run")


def pytest_configure(config):
  """pytest-xdist hands out groups in the order of the collection (pytest_collection_modifyitems) instead of
  by size."""
  if hasattr(config.option, "loadscopereorder"):
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
  """Groups tests for pytest-xdist's --dist=loadgroup: each file is one group (its module fixtures are built
  once), and files that read the same SHARED_RUNS fixture are one group together.

  xdist 3.8 tells its scheduler a test's group by appending "@GROUP" to the test's id, which it does by setting
  `item._nodeid`; pytest 9.2 reads ids from `item._id`, so that suffix never arrived and every group was
  spread over both workers (each session run trained once per worker). The worker therefore appends it here."""
  from _pytest.nodeid import NodeId  # pylint: disable=g-import-not-at-top
  group = {}  # file -> its group's name

  def root(name):
    while group.get(name, name) != name:
      name = group[name]
    return name

  for item in items:
    group.setdefault(item.path.name, item.path.name)
    for run in SHARED_RUNS:
      if run in getattr(item, "fixturenames", ()):
        group.setdefault(run, run)
        group[root(item.path.name)] = root(run)
  size = {}
  for item in items:
    size[root(item.path.name)] = size.get(root(item.path.name), 0) + 1
  rank = {name: (LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST), -n)
          for name, n in size.items()}
  items.sort(key=lambda item: rank[root(item.path.name)])  # stable: a group's tests keep their order
  in_loadgroup_worker = bool(os.environ.get("PYTEST_XDIST_WORKER")) and bool(config.getvalue("loadgroup"))
  for item in items:
    name = root(item.path.name)
    item.add_marker(pytest.mark.xdist_group(name))
    if in_loadgroup_worker and not item.nodeid.endswith(f"@{name}"):
      item._id = NodeId.parse(f"{item.nodeid}@{name}")  # pylint: disable=protected-access
