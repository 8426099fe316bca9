"""A training split kept on the devices (data.on_device) trains exactly as one fed batch by batch, and a
run resumes from either path on the other."""
import jax
import numpy as np
import pytest

from flaxforge.launch.configs import tiny
from flaxforge.trainer import loop, restore
from flaxforge.core.errors import UserError


def _config(on_device, steps_per_call=1, num_steps=100):
  config = tiny.get_config()  # 78 steps per epoch: 100 steps cross an epoch boundary
  config.data.on_device = on_device
  config.train.steps_per_call = steps_per_call
  config.train.num_steps = num_steps
  config.train.eval_every_steps = 50
  return config


def _params(workdir):
  return [np.asarray(x) for x in jax.tree.leaves(restore.restore(str(workdir)).state)
          if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)]


def _assert_close(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # whole trainings
@pytest.mark.parametrize("steps_per_call", [1, 4])
def test_on_device_matches_host_batches(tmp_path, steps_per_call):
  tests = {s: loop.train(_config(s, steps_per_call), str(tmp_path / s)) for s in ("yes", "no")}
  assert tests["yes"]["accuracy"] == pytest.approx(tests["no"]["accuracy"], abs=1e-6)
  _assert_close(_params(tmp_path / "yes"), _params(tmp_path / "no"))


@pytest.mark.slow  # whole trainings
def test_resumes_across_the_two_paths(tmp_path):
  loop.train(_config("yes"), str(tmp_path / "whole"))
  loop.train(_config("no", num_steps=50), str(tmp_path / "mixed"))
  loop.train(_config("yes"), str(tmp_path / "mixed"))
  _assert_close(_params(tmp_path / "mixed"), _params(tmp_path / "whole"))


def test_on_device_refuses_what_it_cannot_hold(tmp_path):
  config = _config("yes")
  config.data.in_memory = False
  with pytest.raises(UserError, match="data.on_device=yes needs"):
    loop.train(config, str(tmp_path / "run"))
  config.data.on_device = "maybe"  # refused by the field's declaration, before anything is prepared
  with pytest.raises(UserError, match="config.data.on_device = 'maybe' is not one of: auto, yes, no"):
    loop.train(config, str(tmp_path / "run2"))
