"""Resuming is exact: N steps + stop + N more, and a run SIGKILLed at random moments three times then
resumed, both end with parameters, optimizer and RNG state bit-identical to an uninterrupted run; for
tiny.py and for packed chat SFT with LoRA over an int8 base (whose data position is the packer's state)."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from etils import epath

from conftest import checkpoint_arrays, cli_env, wait_until

pytestmark = pytest.mark.slow  # subprocess CLI runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL = 120
# tiny.py has dropout 0.1, so the RNG state matters; checkpoints every 10 steps, validation every 40.
FLAGS = ["--config.checkpoint.every_steps=10", "--config.train.log_every=10", "--config.train.eval_every_steps=40"]
CHAT = [[{"role": "user", "content": f"What is {i} plus {j}?"}, {"role": "assistant", "content": f"{i + j}."}]
        for i in range(12) for j in range(i % 5 + 1)]


def _run_flags(kind, folder) -> list[str]:
  """tiny.py; or packed chat SFT of a tiny Llama with LoRA over an int8 base (QLoRA: the base is quantized
again from model.pretrained on restore; the data position is the packer's state)."""
  if kind == "tiny":
    return ["--config=launch/configs/tiny.py"]
  import tiny_hf  # pylint: disable=g-import-not-at-top
  model = tiny_hf.save_chat_llama(folder / "model", [m["content"] for c in CHAT for m in c])
  (folder / "chat.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in CHAT))
  return ["--config=finetune_lm", f"--config.model.pretrained={model}", f"--config.data.path={folder / 'chat.jsonl'}",
          "--config.data.packing=True", "--config.data.seq_len=64", "--config.data.batch_size=4",
          "--config.optimizer.schedule=constant",  # the stop test changes num_steps
          "--config.model.lora.rank=4", "--config.model.base_quant=int8"]


@pytest.fixture(scope="module", params=["tiny", "packed_chat_int8_lora"])
def run_flags(request, tmp_path_factory):
  return _run_flags(request.param, tmp_path_factory.mktemp(request.param))


def _cmd(workdir, steps, run_flags):
  return [sys.executable, "-m", "flaxforge.launch.train", *run_flags, f"--workdir={workdir}",
          f"--config.train.num_steps={steps}", *FLAGS]


def _train(workdir, steps, run_flags):
  result = subprocess.run(_cmd(workdir, steps, run_flags), cwd=REPO, env=cli_env(), capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def _steps(workdir) -> list[int]:
  d = epath.Path(workdir) / "checkpoints"
  return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit()) if d.exists() else []


_arrays = checkpoint_arrays


def _assert_bit_identical(a, b):
  (step_a, arrays_a), (step_b, arrays_b) = a, b
  assert step_a == step_b == TOTAL
  assert len(arrays_a) == len(arrays_b)
  for x, y in zip(arrays_a, arrays_b):
    assert x.dtype == y.dtype and x.shape == y.shape
    assert x.tobytes() == y.tobytes()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, run_flags):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  _train(workdir, TOTAL, run_flags)
  return _arrays(workdir)


def test_stop_and_resume_equals_uninterrupted(tmp_path, uninterrupted, run_flags):
  _train(tmp_path, TOTAL // 2, run_flags)
  assert max(_steps(tmp_path)) == TOTAL // 2
  resumed = _train(tmp_path, TOTAL, run_flags)
  assert f"resumed from the checkpoint at step {TOTAL // 2}" in resumed.stdout
  _assert_bit_identical(_arrays(tmp_path), uninterrupted)


def test_sigkill_three_times_then_resume_equals_uninterrupted(tmp_path, uninterrupted, run_flags):
  # tiny.py runs 10 steps in ~50 ms, so a kill is aimed at a checkpoint and lands at most 0.1 s after it;
  # every kill leaves at least 30 steps, a validation and the test evaluation still to run.
  seed = 2  # fixed, so the kill targets and delays repeat from run to run (the moments still vary with load)
  rng = random.Random(seed)
  seen, kills = 0, []
  for target in sorted(rng.sample(range(20, 90, 10), 3)):
    want = max(target, seen + 10)
    if want > TOTAL - 30:
      break
    proc = subprocess.Popen(_cmd(tmp_path, TOTAL, run_flags), cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    wait_until(lambda: max(_steps(tmp_path) or [0]) >= want, proc, f"seed {seed}: checkpoint {want}")
    time.sleep(rng.uniform(0, 0.1))  # anywhere: mid-step, mid-save, mid-validation
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"seed {seed}: the run ended before the kill at {want}"
    seen = max(_steps(tmp_path))
    kills.append(seen)
  assert len(kills) >= 2, f"seed {seed}: only {kills}"
  _train(tmp_path, TOTAL, run_flags)
  _assert_bit_identical(_arrays(tmp_path), uninterrupted)
