"""trainer/profiler.py through the loop: `profile.start_step` writes a trace TensorBoard and Perfetto read."""
import gzip
import json

import jax
import pytest

from flaxforge.launch.configs import tiny
from flaxforge.trainer import loop

pytestmark = pytest.mark.slow  # a whole training


def test_profile_config_writes_a_trace(tmp_path):
  config = tiny.get_config()
  config.train.num_steps = config.train.eval_every_steps = 20
  config.profile.start_step, config.profile.num_steps = 10, 3
  loop.train(config, str(tmp_path), devices=jax.devices()[:1])
  [run] = (tmp_path / "profile" / "plugins" / "profile").iterdir()
  assert list(run.glob("*.xplane.pb")) and list(run.glob("*.xplane.pb"))[0].stat().st_size > 1000
  [trace] = run.glob("*.trace.json.gz")
  events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
  # Each step carries its number (jax.profiler.StepTraceAnnotation: TensorBoard's per-step view), and the
  # loop's own Python calls were traced.
  assert [e["args"]["step_num"] for e in events if e.get("name") == "train"] == ["10", "11", "12"]
  assert any("on_leaves" in e.get("name", "") for e in events)
