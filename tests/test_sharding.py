"""One model, any mesh: data-parallel, FSDP and tensor-parallel layouts of the digits MLP train like one
device, parameters are split as trainer/mesh.py's RULES say, and meshes that cannot fit are refused."""
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import cli_env
from flaxforge import data as data_lib
from flaxforge.data import pipeline, preprocess
from flaxforge.launch.configs import mlp_digits
from flaxforge.trainer import feed, mesh as mesh_lib, state as state_lib, steps

STEPS = 20
REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def digits():
  """The default config (dropout on: its masks must not depend on the layout) and 20 real host batches."""
  config = mlp_digits.get_config()
  dataset = data_lib.load(config.data)
  rows = pipeline.Rows(dataset.splits["train"])
  transform = preprocess.make_transform(dataset.info, config.data.label_encoding)
  batches = list(pipeline.train_batches(rows, config.data.batch_size, STEPS, seed=0, transform=transform))
  return config, dataset.info, batches


def _train(digits, layout, devices):
  """Per-step losses and the final state after STEPS real train steps on mesh (data, fsdp, tensor)."""
  config, info, batches = digits
  config = config.copy_and_resolve_references()
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = layout
  mesh = mesh_lib.make_mesh(config.mesh, devices)
  structure, create = state_lib.structure(config, info, mesh, STEPS)
  train_step = steps.make_train_step(structure, mesh, loss_kind=config.loss)
  state, losses = create(), []
  for batch in batches:
    batch = feed.to_device(batch, mesh_lib.batch_sharding(mesh))
    state, sums = train_step(state, steps.train_metrics_init(mesh), batch)
    losses.append(float(sums["loss_sum"]) / float(sums["weight"]))
  return np.asarray(losses), state


def _params(state):
  return {path: np.asarray(x) for path, x in jax.tree_util.tree_leaves_with_path(state[0])
          if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)}


@pytest.fixture(scope="module")
def one_device(digits):
  return _train(digits, (1, 1, 1), jax.devices()[:1])


@pytest.mark.slow  # whole trainings
@pytest.mark.parametrize("layout", [(8, 1, 1), (1, 8, 1), (2, 4, 1), (4, 1, 2)],
                         ids=["data-parallel", "fsdp", "data+fsdp", "data+tensor"])
def test_every_layout_trains_like_one_device(digits, one_device, layout):
  assert len(jax.devices()) == 8
  ref_losses, ref_state = one_device
  losses, state = _train(digits, layout, jax.devices())
  assert ref_losses[-1] < ref_losses[0]  # it does learn, so agreeing means something
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-5)
  ref, got = _params(ref_state), _params(state)
  assert ref.keys() == got.keys()
  for path in ref:
    np.testing.assert_allclose(got[path], ref[path], rtol=1e-4, atol=1e-5, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("layout", [(1, 8, 1), (4, 1, 2), (1, 1, 8)], ids=["fsdp", "data+tensor", "tensor"])
def test_parameters_are_sharded_as_the_rules_say(digits, layout):
  """Kernels are (embed, mlp) -> (fsdp, tensor), biases (mlp) -> tensor, replicated over data; a dimension
  its axis does not divide (10 classes over 8) stays whole. The Adam moments follow their parameters."""
  config, info, _ = digits
  config = config.copy_and_resolve_references()
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = layout
  mesh = mesh_lib.make_mesh(config.mesh)
  structure, create = state_lib.structure(config, info, mesh, STEPS)
  checked = split = 0
  for path, x in jax.tree_util.tree_leaves_with_path(create()):
    name = jax.tree_util.keystr(path)
    if "['layers']" not in name:
      continue
    axes = ("fsdp", "tensor") if "['kernel']" in name else ("tensor",)
    want = tuple(d // mesh.shape[a] if d % mesh.shape[a] == 0 else d for d, a in zip(x.shape, axes))
    shards = x.addressable_shards
    assert all(sh.data.shape == want for sh in shards), (name, x.shape, shards[0].data.shape, want)
    assert len({str(sh.index) for sh in shards}) == np.prod(x.shape) // np.prod(want), name  # one slice per group
    checked += 1
    split += want != x.shape
  assert checked == 18 and split > 0  # 3 kernels + 3 biases, each with its two Adam moments


def _cli(args, devices=2):
  return subprocess.run([sys.executable, "-m", "flaxforge.launch.train", "--config=launch/configs/tiny.py", *args],
                        cwd=REPO, env=cli_env(devices, JAX_PLATFORMS="cpu"), capture_output=True, text=True)


@pytest.mark.slow  # subprocess CLI runs
@pytest.mark.parametrize("flags, says", [
    (["--config.mesh.fsdp=3"], "4 devices are not divisible by 3; choose sizes whose product divides 4 (1, 2, 4)"),
    (["--config.mesh.data=2", "--config.mesh.tensor=3"], "needs 6 devices but 4 are available"),
    (["--config.mesh.fsdp=4", "--config.data.batch_size=18"], "use a multiple of 4, e.g. --config.data.batch_size=16"),
], ids=["fsdp-3", "too-many", "batch"])
def test_a_mesh_that_cannot_fit_is_refused_in_one_line(tmp_path, flags, says):
  run = _cli([f"--workdir={tmp_path}/run", *flags], devices=4)
  assert run.returncode == 2, run.stderr
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], run.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any state was built


@pytest.mark.slow  # a whole training and a subprocess CLI run
def test_an_fsdp_checkpoint_evaluates_on_one_device(tmp_path):
  """Saved from 8 devices with every weight split 8 ways, restored whole onto 1 device: same metrics."""
  from flaxforge.launch.configs import tiny  # pylint: disable=g-import-not-at-top
  from flaxforge.trainer import loop  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.mesh.data, config.mesh.fsdp = 1, 8
  on_eight = loop.train(config, str(tmp_path))
  run = subprocess.run([sys.executable, "-m", "flaxforge.launch.eval", f"--workdir={tmp_path}"], cwd=REPO,
                       env=cli_env(JAX_PLATFORMS="cpu"), capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  on_one = json.loads(run.stdout.strip().splitlines()[-1])
  assert on_one["step"] == config.train.num_steps
  assert on_one["accuracy"] == pytest.approx(on_eight["accuracy"], abs=1e-9)
  assert on_one["loss"] == pytest.approx(on_eight["loss"], rel=1e-5)
  assert on_one["accuracy"] > 0.3  # trained, not a fresh init that would also agree


def test_unnamed_parameters_are_noted_only_on_a_mesh_of_several_devices(capsys):
  """On one device "replicated on every device" is moot: the note is for a mesh that could shard them."""
  from flax import nnx  # pylint: disable=g-import-not-at-top

  class Unnamed(nnx.Module):
    def __init__(self):
      self.scale = nnx.Param(np.ones((4,), np.float32))

  abstract = nnx.state((nnx.eval_shape(Unnamed),))
  for devices, noted in ((1, False), (2, True)):
    mesh_lib._told.clear()  # pylint: disable=protected-access
    config = mlp_digits.get_config()
    config.mesh.data, config.mesh.fsdp = devices, 1
    mesh_lib.state_shardings(abstract, mesh_lib.make_mesh(config.mesh, jax.devices()[:devices]))
    assert ("1 parameters carry no logical axis names" in capsys.readouterr().err) == noted
