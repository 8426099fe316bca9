"""Models and datasets by import path: a user's module (or .py file) in their own folder, trained from there;
config fields the user declares; one-line errors naming the module and the function it lacks; a model's own
axis names sharded by config.mesh.rules, unnamed parameters replicated with one note."""
import os
import json
import subprocess
import sys
import textwrap

import ml_collections
import numpy as np
import pytest
from flax import nnx

from conftest import cli_env
from flaxforge import data as data_lib
from flaxforge.models import registry
from flaxforge.core.errors import UserError
from flaxforge.launch.configs import base
from flaxforge.trainer import mesh as mesh_lib, state as state_lib

# A two-class problem (the sign of the first feature), 8 features, as the user's own data module.
LOADER = '''
import numpy as np
from flaxforge.data.dataset import Dataset

def load(cfg):
  rng = np.random.default_rng(cfg.get("seed", 0))
  def split(n):
    x = rng.normal(size=(n, 8)).astype(np.float32)
    return [{"inputs": row, "label": int(row[0] > 0)} for row in x]
  return Dataset(splits={"train": split(512), "validation": split(64), "test": split(128)},
                 info={"task": "classification", "num_classes": 2, "input_shape": [8]}, assets={"labels": ["-", "+"]})
'''

# The user's model: `width` is a field their config declares; `head` has an axis of its own ("features"),
# `gate` no names at all.
MODEL = '''
import jax
from flax import nnx

class Net(nnx.Module):
  def __init__(self, width, classes, rngs):
    init = nnx.initializers.lecun_normal()
    self.body = nnx.Linear(8, width, rngs=rngs, kernel_init=nnx.with_partitioning(init, ("features", "mlp")))
    self.gate = nnx.Param(jax.numpy.ones((width,)))
    self.head = nnx.Linear(width, classes, rngs=rngs)

  def __call__(self, x):
    return self.head(jax.nn.relu(self.body(x)) * self.gate[...])

def from_config(cfg, info, *, rngs):
  return Net(cfg.width, info["num_classes"], rngs)
'''

CONFIG = '''
from flaxforge.launch.configs import base

def get_config():
  c = base.get_config()
  c.model.width = 64
  c.mesh.rules = (("features", "fsdp"),)
  c.data.batch_size = 32
  c.optimizer.learning_rate = 1e-2
  c.train.num_steps = 60
  c.train.eval_every_steps = 30
  c.train.progress_bar = False
  return c
'''


@pytest.fixture
def project(tmp_path):
  """A user's project folder: my_models/net.py, my_data/loader.py, my_config.py."""
  for folder, name, source in (("my_models", "net.py", MODEL), ("my_data", "loader.py", LOADER), (".", "my_config.py", CONFIG)):
    (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / folder / name).write_text(textwrap.dedent(source))
  (tmp_path / "my_models" / "__init__.py").write_text("")
  (tmp_path / "my_data" / "__init__.py").write_text("")
  yield tmp_path
  # A package is imported once per process: the next test's project must not find this one's.
  for name in [m for m in sys.modules if m.split(".")[0] in ("my_models", "my_data")]:
    del sys.modules[name]
  sys.path[:] = [p for p in sys.path if p != str(tmp_path)]


@pytest.mark.slow  # a subprocess CLI run
def test_a_users_model_and_data_train_by_import_path_from_their_folder(project):
  env = cli_env(2, JAX_PLATFORMS="cpu", TFDS_DATA_DIR=str(project / "tfds"))
  proc = subprocess.run([sys.executable, "-m", "flaxforge.launch.train", "--config=my_config.py", "--workdir=run",
                         "--config.model.name=my_models.net", "--config.data.name=my_data.loader",
                         "--config.model.width=16", "--config.mesh.fsdp=2", "--config.mesh.data=1"],
                        cwd=project, env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stderr.count("carry no logical axis names") == 1, proc.stderr
  assert "gate" in proc.stderr and "head.kernel" in proc.stderr and "body.kernel" not in proc.stderr
  config = json.loads((project / "run" / "config.json").read_text())
  assert config["model"]["width"] == 16  # the user's own field took the command-line override
  records = [json.loads(line) for line in (project / "run" / "metrics.jsonl").read_text().splitlines()]
  test = [r for r in records if r["split"] == "test"][-1]
  assert test["accuracy"] >= 0.9  # the sign of one feature: learnt, not guessed
  # Issue 27, item 6: the run records its modules' files, so eval finds them from any folder.
  assert config["model"]["name"] == str(project / "my_models" / "net.py")
  assert config["data"]["name"] == str(project / "my_data" / "loader.py")
  elsewhere = project / "elsewhere"
  elsewhere.mkdir()
  proc = subprocess.run([sys.executable, "-m", "flaxforge.launch.eval", f"--workdir={project / 'run'}"],
                        cwd=elsewhere, env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads(proc.stdout.splitlines()[-1])["accuracy"] == test["accuracy"]
  # A module moved away: one line naming the run's config.json, not a --config flag eval does not take.
  (project / "my_models" / "net.py").rename(project / "my_models" / "moved.py")
  proc = subprocess.run([sys.executable, "-m", "flaxforge.launch.eval", f"--workdir={project / 'run'}"],
                        cwd=elsewhere, env=env, capture_output=True, text=True)
  assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-3000:]
  assert "model.name in " + str(project / "run" / "config.json") in proc.stderr and "--config" not in proc.stderr


def test_a_file_path_model_name_is_recorded_absolute(project, monkeypatch):
  """Like every other path field, so eval and predict find the file from any folder."""
  from flaxforge.trainer import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(project)
  config = base.get_config()
  config.model.name, config.data.name = os.path.join("my_models", "net.py"), "my_data.loader"
  checked, _ = workdir_lib.check_config(workdir_lib.prepare(str(project / "run2")), config)
  assert checked.model.name == str(project / "my_models" / "net.py")
  assert checked.data.name == str(project / "my_data" / "loader.py")
  config.model.name, config.data.name = "mlp", "digits"  # built-in names stay names
  checked, _ = workdir_lib.check_config(project / "run2", config)
  assert (checked.model.name, checked.data.name) == ("mlp", "digits")


def test_a_file_path_names_a_model_too(project):
  cfg = ml_collections.ConfigDict({"name": str(project / "my_models" / "net.py"), "width": 4})
  model = registry.build(cfg, {"num_classes": 3}, rngs=nnx.Rngs(0))
  assert model(np.zeros((2, 8), np.float32)).shape == (2, 3)


def test_one_line_errors_name_the_module_and_what_it_lacks(project, monkeypatch):
  monkeypatch.chdir(project)
  (project / "my_models" / "empty.py").write_text("X = 1\n")
  with pytest.raises(UserError, match=r"module 'my_models.empty' .*has no function from_config\(\)"):
    registry.build(ml_collections.ConfigDict({"name": "my_models.empty"}), {}, rngs=nnx.Rngs(0))
  with pytest.raises(UserError, match=r"unknown dataset 'my_data.nope'.*--config.data.name"):
    data_lib.load(ml_collections.ConfigDict({"name": "my_data.nope"}))
  with pytest.raises(UserError, match=r"nothing.py not found.*--config.model.name"):
    registry.build(ml_collections.ConfigDict({"name": "nothing.py"}), {}, rngs=nnx.Rngs(0))
  (project / "my_models" / "broken.py").write_text("import a_package_that_is_not_installed\n")
  with pytest.raises(ModuleNotFoundError):  # a missing import inside the user's module is theirs to see
    registry.build(ml_collections.ConfigDict({"name": "my_models.broken"}), {}, rngs=nnx.Rngs(0))


def _config(project, rules):
  config = base.get_config()
  config.model.name, config.model.width = str(project / "my_models" / "net.py"), 16
  config.mesh.data, config.mesh.fsdp, config.mesh.rules = 1, 8, rules
  return config


def test_config_rules_shard_a_models_own_axis_names(project):
  config = _config(project, (("features", "fsdp"),))
  mesh = mesh_lib.make_mesh(config.mesh)
  structure, create = state_lib.structure(config, {"num_classes": 2}, mesh, 10)
  kernel = create()[0]["body"]["kernel"]
  assert kernel.shape == (8, 16) and kernel.addressable_shards[0].data.shape == (1, 16)  # features over 8
  with pytest.raises(UserError, match=r"body.kernel names the axis 'features', which has no mesh rule.*mesh.rules"):
    state_lib.structure(_config(project, ()), {"num_classes": 2}, mesh, 10)
  with pytest.raises(UserError, match=r"mesh.rules maps 'features' to 'gpu'"):
    mesh_lib.rules((("features", "gpu"),))
