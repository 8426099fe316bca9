"""How long a training takes to stop after a SIGTERM sent mid-run (README, Preemption and resume): the seconds
from the signal to exit 0, and the seconds a step takes, measured in the same run.

  PYTHONPATH=. .venv/bin/python -m benchmarks.sigterm_latency --rounds 2 \
      --out benchmarks/results/sigterm_latency_<date>.jsonl

Each round trains MiniLM on 20 Newsgroups with `finetune_text`'s defaults (sequence 256, batch 32, logging
every 50 steps) and a checkpoint every 2 steps, which shows from the outside that steps are running; once
checkpoint 4 exists the run gets a SIGTERM. The step time is (when checkpoint 4 appeared - when checkpoint 2
did) / 2. The loop keeps at most two calls queued (trainer/steps.py InFlight), so the stop should come
within about two steps plus one synchronous checkpoint.
"""
import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

from benchmarks import records, workloads

POLL_S = 0.05


def _appeared(folder: pathlib.Path, step: int, proc: subprocess.Popen, log: pathlib.Path) -> float:
  """The time checkpoint `step` (a finished one, no .orbax-checkpoint-tmp suffix) appeared in `folder`."""
  while not (folder / str(step)).is_dir():
    if proc.poll() is not None:
      raise RuntimeError(f"the run ended before checkpoint {step}: {log.read_text()[-3000:]}")
    time.sleep(POLL_S)
  return time.monotonic()


def one_round(workdir: pathlib.Path, manual_dir: str, model: str, tfds_dir: str) -> dict:
  cmd = [sys.executable, "-m", "flaxforge.launch.train", "--config=launch/configs/finetune_text.py",
         f"--workdir={workdir}", "--config.data.name=20newsgroups", f"--config.data.manual_dir={manual_dir}",
         f"--config.data.data_dir={tfds_dir}", f"--config.model.pretrained={model}",
         "--config.checkpoint.every_steps=2", "--config.train.progress_bar=false"]
  log = workdir.parent / "output.log"
  with log.open("w") as output:
    proc = subprocess.Popen(cmd, cwd=workloads.REPO, env={**os.environ, "PYTHONPATH": workloads.REPO},
                            stdout=output, stderr=subprocess.STDOUT, text=True)
    try:
      two = _appeared(workdir / "checkpoints", 2, proc, log)
      four = _appeared(workdir / "checkpoints", 4, proc, log)
      machine = records.machine()
      sent = time.monotonic()
      proc.send_signal(signal.SIGTERM)
      proc.wait(timeout=3600)
      exited = time.monotonic()
    finally:
      proc.kill()
  said = [l for l in log.read_text().splitlines() if l.startswith("stopped by SIGTERM")]
  return {**machine, "command": " ".join(cmd[1:]), "exit_status": proc.returncode,
          "seconds_signal_to_exit": round(exited - sent, 2), "seconds_per_step": round((four - two) / 2, 2),
          "stopped": said[-1] if said else None}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--manual_dir", default=workloads.NG_DIR)
  p.add_argument("--model", default=workloads.MINILM_DIR)
  p.add_argument("--tfds_dir", default=workloads.TFDS_DIR)
  p.add_argument("--out", default="")
  a = p.parse_args()
  for _ in range(a.rounds):
    with tempfile.TemporaryDirectory() as tmp:
      row = one_round(pathlib.Path(tmp) / "run", a.manual_dir, a.model, a.tfds_dir)
    print(json.dumps(row), flush=True)
    if a.out:
      records.append(a.out, [row])


if __name__ == "__main__":
  main()
