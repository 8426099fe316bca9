"""A config's xla_flags reach XLA_FLAGS before JAX starts: in training from the config, in eval and predict
from the run's config.json (launch/common.py)."""
import json
import os

from flaxforge.launch import common


def test_appends_without_repeating(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  common.use_xla_flags("--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_enable_fast_math=false")
  common.use_xla_flags("--xla_cpu_experimental_ynn_fusion_type=")
  common.use_xla_flags("")
  assert os.environ["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=8",
                                             "--xla_cpu_experimental_ynn_fusion_type=",
                                             "--xla_cpu_enable_fast_math=false"]


def test_eval_takes_the_runs_own_flags(monkeypatch, tmp_path):
  monkeypatch.setenv("XLA_FLAGS", "")
  (tmp_path / "config.json").write_text(json.dumps({"xla_flags": "--xla_cpu_experimental_ynn_fusion_type="}))
  common.use_workdir_xla_flags(str(tmp_path))
  common.use_workdir_xla_flags(str(tmp_path / "missing"))  # reported later by the restore, not here
  assert os.environ["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type="
