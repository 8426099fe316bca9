"""Issue 30: a run fine-tuned from a pretrained base (LoRA or full) whose base folder has since moved is refused
in one line that names a fix every command can apply (eval, predict, generate, serve, export take no
--config.model.pretrained), not "point model.pretrained at ..."."""
import json
import os
import subprocess
import sys

import pytest

from flaxforge.core.errors import UserError
from flaxforge.launch.configs import finetune_lm
from flaxforge.trainer import restore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def orphan(tmp_path):
  """A LoRA run's work directory (config.json, info.json) whose base model folder is gone."""
  config = finetune_lm.get_config()
  config.model.pretrained = str(tmp_path / "moved_base")
  config.model.lora.rank = 4
  workdir = tmp_path / "run"
  (workdir / "checkpoints" / "10").mkdir(parents=True)
  (workdir / "config.json").write_text(config.to_json())
  (workdir / "info.json").write_text(json.dumps({"task": "lm", "vocab_size": 300, "seq_len": 16}))
  return workdir


@pytest.mark.slow  # a subprocess CLI run
def test_restoring_a_run_whose_base_moved_names_a_fix_every_command_takes(orphan, tmp_path):
  with pytest.raises(UserError, match=rf"^the base model of the run in {orphan}, {tmp_path / 'moved_base'} "
                                      rf"\(model.pretrained\), holds no config.json \(moved or deleted\)"):
    restore.restore(str(orphan), model_only=True)
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out = subprocess.run([sys.executable, "-m", "flaxforge.launch.generate", f"--workdir={orphan}", "--prompt=a"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
  assert "point model.pretrained at" not in lines[0] and "--config" not in lines[0]
  assert lines[0].endswith(f'put the folder back there, or set "pretrained" in the "model" section of '
                           f"{orphan / 'config.json'} to where it is now")
