"""The train step compiles once per run: no recompilation after the first call, with and without
several steps per call (a recompile per call would cost more than the steps themselves on small models);
the eval step compiles once per run, for every validation and the test."""
import collections

import pytest
from jax import monitoring

from flaxforge.launch.configs import tiny
from flaxforge.trainer import loop

pytestmark = pytest.mark.slow  # tiny whole trainings

_COMPILES = collections.Counter()
_ORDER = []


def _listen(event, duration, **kwargs):  # jax 0.10.2 tags each backend compile with the jitted function's name
  del duration
  if event == "/jax/core/compile/backend_compile_duration":
    _COMPILES[kwargs.get("fun_name", "?")] += 1
    _ORDER.append(kwargs.get("fun_name", "?"))


monitoring.register_event_duration_secs_listener(_listen)


@pytest.mark.parametrize("steps_per_call, step_name", [(1, "jit(train_step)"), (5, "jit(train_5_steps)")])
def test_train_step_compiles_once(tmp_path, steps_per_call, step_name):
  config = tiny.get_config()
  config.train.steps_per_call = steps_per_call  # 40 steps: 8 calls of 5, boundaries every 10 and 20
  _COMPILES.clear()
  loop.train(config, str(tmp_path / "run"))
  assert _COMPILES[step_name] == 1, dict(_COMPILES)
  # Metric accumulators are reset at every log interval (4 here): their init must not recompile each time.
  assert _COMPILES["jit(zeros)"] <= 2, dict(_COMPILES)  # train and eval accumulators, once each (or cached)
  # Validations at steps 20 and 40, then the test: one eval step built per run, so one compile.
  assert _COMPILES["jit(eval_step)"] == 1, dict(_COMPILES)


def test_remainder_steps_reuse_the_single_step(tmp_path):
  config = tiny.get_config()
  config.train.steps_per_call = 8  # boundaries every 10 steps: calls of 8, then 2 single steps
  _COMPILES.clear()
  _ORDER.clear()
  loop.train(config, str(tmp_path / "run"))
  assert _COMPILES["jit(train_8_steps)"] == 1 and _COMPILES["jit(train_step)"] == 1, dict(_COMPILES)
  # ... before the first call, so that compile never lands inside a logged interval mid-run
  steps = [name for name in _ORDER if name.startswith("jit(train_")]
  assert steps == ["jit(train_step)", "jit(train_8_steps)"], _ORDER
