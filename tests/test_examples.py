"""examples/ run from their own folders as a user runs them (one CPU device, a subprocess each)."""
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_text_classifier_example(tmp_path):
  folder = REPO / "examples" / "text_classifier"
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["TFDS_DATA_DIR"] = str(tmp_path / "tfds")
  start = time.monotonic()
  proc = subprocess.run([sys.executable, "train.py", str(tmp_path / "run")], cwd=folder, env=env,
                        capture_output=True, text=True, timeout=300)
  seconds = time.monotonic() - start
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert any(line.startswith("early stopping after step") for line in lines), proc.stdout
  assert any(line.startswith("test (the best checkpoint, step") for line in lines), proc.stdout
  assert lines[-3:] == ["space: The astronaut saw a comet from orbit", "cooking: Knead the dough with butter and salt",
                        "football: The striker scored a penalty goal"]
  assert seconds < 120, f"the example took {seconds:.0f} s; CI allows two minutes"
