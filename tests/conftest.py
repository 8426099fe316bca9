"""Test session set-up: 8 fake CPU devices stand in for an accelerator slice (set before JAX starts)."""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
# The test extra brings libtpu (flaxforge plan compiles for TPUs), which, on a machine without a TPU, looks for
# one at every JAX start and prints warnings on stderr: the tests (and the commands they run) use the CPU.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TFDS_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", ".pytest_tfds"))

import pathlib  # pylint: disable=g-import-not-at-top,wrong-import-position
import subprocess  # pylint: disable=g-import-not-at-top,wrong-import-position
import sys  # pylint: disable=g-import-not-at-top,wrong-import-position

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.FLAGS.mark_as_parsed()  # Grain reads absl flags; tests run outside absl.app.run

REPO = pathlib.Path(__file__).resolve().parent.parent


def run_module(*args, timeout=1200) -> subprocess.CompletedProcess:
  """`python -m MODULE ARGS` from the repository as a user runs it (one CPU device), which must succeed."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


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


@pytest.fixture
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
