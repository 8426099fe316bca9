"""Several processes as one JAX cluster on localhost (one CPU device each), started the ways users start them:
launch/local_multiprocess.sh, and launch/slurm.sh under an emulated srun. They train, resume and evaluate
exactly like one process with the same device count; only process 0 writes logs; a failure stops them all."""
import json
import os
import pathlib
import random
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import HANG_GUARD_S, checkpoint_arrays, cli_env
from flaxforge.launch.configs import tiny
from flaxforge.trainer import loop

pytestmark = pytest.mark.slow  # several processes

REPO = pathlib.Path(__file__).resolve().parent.parent
LAUNCHER = REPO / "launch" / "local_multiprocess.sh"


def _env(devices=1, **extra):
  return cli_env(devices, **{"JAX_PLATFORMS": "cpu", "PYTHON": sys.executable, "FLAXFORGE_HEARTBEAT_S": "10", **extra})


def _launch(num, *flags, **env):
  """launch/local_multiprocess.sh, SIGKILLed after HANG_GUARD_S (processes in one cluster can hang together)."""
  return subprocess.run(["timeout", "-s", "KILL", str(HANG_GUARD_S), "bash", str(LAUNCHER), str(num), *flags],
                        cwd=REPO, env=_env(**env), capture_output=True, text=True)


def _results(output: str, prefix=r"(?:\[(\d)\] )?") -> dict[int, dict]:
  """The JSON result line of each process, by process index (the launcher leaves process 0's unprefixed)."""
  found = {}
  for line in output.splitlines():
    m = re.match(prefix + r"(\{.*\})$", line)
    if m:
      found[int(m.group(1) or 0)] = json.loads(m.group(2))
  return found


def _records(workdir: pathlib.Path):
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
  """2 processes x 1 device: train to step 20 (a checkpoint), stop, then resume to step 40 and test."""
  workdir = tmp_path_factory.mktemp("mp")
  first = _launch(2, "--config=launch/configs/tiny.py", f"--workdir={workdir}", "--config.train.num_steps=20")
  assert first.returncode == 0, first.stdout + first.stderr
  second = _launch(2, "--config=launch/configs/tiny.py", f"--workdir={workdir}")
  assert second.returncode == 0, second.stdout + second.stderr
  return workdir, second.stdout


def test_two_processes_train_and_resume_like_one_process_with_two_devices(two_process_run, tmp_path):
  workdir, output = two_process_run
  assert re.search(r"^resumed from the checkpoint at step 20", output, re.M)
  results = _results(output)
  assert results.keys() == {0}  # one result line per job, from process 0

  reference = loop.train(tiny.get_config(), str(tmp_path), devices=jax.devices()[:2])  # 1 process x 2 devices
  (step, got), (ref_step, want) = checkpoint_arrays(workdir), checkpoint_arrays(tmp_path)
  assert step == ref_step == 40 and len(got) == len(want)
  # Parameters, optimizer state and RNG after 40 Adam steps. Not bit for bit: measured on jax 0.10.2, some
  # parameters differ in their last bits (presumably the cross-process sum's order), so a tolerance far below
  # any real difference in what was trained; integer state (step, RNG key data) must be equal.
  for x, y in zip(got, want):
    assert x.dtype == y.dtype and x.shape == y.shape
    if x.dtype.kind == "f":
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
    else:
      np.testing.assert_array_equal(x, y)
  for key in ("loss", "accuracy", "macro_f1"):
    assert results[0][key] == pytest.approx(reference[key], rel=1e-6, abs=1e-7), key
  train = lambda records: [(r["step"], r["loss"]) for r in records if r["split"] == "train"]
  got, want = train(_records(workdir)), train(_records(tmp_path))
  assert [s for s, _ in got] == [s for s, _ in want] == [10, 20, 30, 40]
  assert [l for _, l in got] == pytest.approx([l for _, l in want], rel=1e-6)


def test_only_process_zero_writes_logs_and_all_write_checkpoints(two_process_run):
  workdir, _ = two_process_run
  keys = [(r["step"], r["split"]) for r in _records(workdir)]
  assert len(keys) == len(set(keys))  # a second writer would duplicate every record
  assert {(20, "validation"), (40, "validation"), (40, "test")} <= set(keys)
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == ["20", "40"]
  assert (workdir / "config.json").exists() and not list(workdir.glob(".write-test-*"))


def test_a_two_process_checkpoint_evaluates_on_three_devices(two_process_run):
  """Another process and device count, one that does not divide the eval batch (256): padding absorbs it."""
  workdir, output = two_process_run
  run = subprocess.run([sys.executable, "-m", "flaxforge.launch.eval", f"--workdir={workdir}"], cwd=REPO, env=_env(3),
                       capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  alone, together = json.loads(run.stdout.strip().splitlines()[-1]), _results(output)[0]
  assert alone["step"] == 40
  assert alone["accuracy"] == together["accuracy"] and alone["loss"] == pytest.approx(together["loss"], rel=1e-5)


def test_slurm_script_starts_one_cluster_through_srun(two_process_run, tmp_path):
  """launch/slurm.sh under a stand-in srun that starts 2 tasks with SLURM's variables: JAX finds the cluster
  from SLURM_* alone (no flags), and the tasks evaluate the 2-process checkpoint together."""
  workdir, output = two_process_run
  srun = tmp_path / "srun"
  srun.write_text("""#!/usr/bin/env bash
while [[ $1 == --* ]]; do echo "option $1"; shift; done
for i in 0 1; do
  SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_STEP_NODELIST=localhost SLURM_STEP_NUM_NODES=1 "$@" 2>&1 | sed "s/^/$i: /" &
done
wait
""")
  srun.chmod(0o755)
  env = _env(1, PATH=f"{tmp_path}:{os.environ['PATH']}", MODULE="flaxforge.launch.eval", SLURM_NTASKS="2",
             SLURM_JOB_ID=str(random.randrange(1 << 20)), SLURM_SUBMIT_DIR=str(REPO))
  run = subprocess.run(["timeout", "-s", "KILL", str(HANG_GUARD_S), "bash", "launch/slurm.sh", f"--workdir={workdir}"],
                       cwd=REPO, env=env, capture_output=True, text=True)
  assert run.returncode == 0, run.stdout + run.stderr
  assert "option --kill-on-bad-exit=1" in run.stdout
  results = _results(run.stdout, prefix=r"(\d): ")
  assert results.keys() == {0}
  together = _results(output)[0]
  assert results[0]["step"] == 40 and results[0]["accuracy"] == together["accuracy"]
  assert results[0]["loss"] == pytest.approx(together["loss"], rel=1e-6)


def test_launcher_stops_the_others_when_one_fails(tmp_path):
  """Process 1 fails; process 0 would wait forever and ignores SIGTERM, as a rank blocked in a collective
  does. The launcher kills it and exits with process 1's status."""
  (tmp_path / "worker.py").write_text("""import signal, sys, time
i = int([a for a in sys.argv if a.startswith("--process_id=")][0].split("=")[1])
open(f"{sys.argv[-1]}/pid{i}", "w").write(str(__import__("os").getpid()))
if i == 1:
  time.sleep(0.5); print("boom", flush=True); sys.exit(3)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("waiting", flush=True)
time.sleep(%d)
""" % (2 * HANG_GUARD_S))  # longer than _launch's hang guard: only a launcher that kills it returns 3
  run = _launch(2, str(tmp_path), MODULE="worker", PYTHONPATH=str(tmp_path))
  assert run.returncode == 3, run.stdout + run.stderr
  assert "[1] boom" in run.stdout and "\nwaiting" in "\n" + run.stdout
  assert "process 1 exited with status 3" in run.stderr
  with pytest.raises(ProcessLookupError):
    os.kill(int((tmp_path / "pid0").read_text()), 0)


def test_tpu_vm_script_runs_the_same_command_on_every_worker(tmp_path):
  """launch/tpu_vm.sh against a stand-in gcloud: code copied to all workers, installed, then started on all."""
  log = tmp_path / "gcloud.log"
  gcloud = tmp_path / "gcloud"
  gcloud.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> {log}\n'
                    f'[[ $4 == scp ]] && tar -tzf "$5" > {tmp_path}/shipped\nexit 0\n')
  gcloud.chmod(0o755)
  run = subprocess.run(["bash", "launch/tpu_vm.sh", "my-tpu", "us-central2-b", "--config=launch/configs/tiny.py",
                        "--workdir=gs://bucket/run"], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
  assert run.returncode == 0, run.stderr
  calls = log.read_text().splitlines()
  assert len(calls) == 4 and all("--zone=us-central2-b --worker=all" in c for c in calls)
  assert calls[0].startswith("compute tpus tpu-vm scp ") and "my-tpu:flaxforge.tar.gz" in calls[0]
  assert "pip install -q -e '.[tpu]'" in calls[2]
  assert calls[3].startswith("compute tpus tpu-vm ssh my-tpu --command=cd flaxforge && FLAXFORGE_DISTRIBUTED=1 "
                             "python3 -m flaxforge.launch.train --config=launch/configs/tiny.py --workdir=gs://bucket/run")
  shipped = (tmp_path / "shipped").read_text().splitlines()
  assert "launch/train.py" in shipped and not any(p.startswith(".venv/") for p in shipped)


def test_a_pretrained_fine_tune_on_two_processes_matches_one_device(tmp_path):
  """A Hugging Face BERT (tests/tiny_hf.py's random 2-layer one: the equality does not depend on the weights;
  loading the real MiniLM is covered by test_finetune.py and test_hf_models.py) fine-tuned 6 steps (batch 8,
  sequence 32): 2 processes x 1 device give one device's losses and final checkpoint to float tolerance. (8
  devices sharded FSDP against one, on the same tiny BERT, is test_finetune.py's
  test_sigkill_resume_is_bit_exact_and_eight_fsdp_devices_match_one, with dropout on.)"""
  import csv_run  # pylint: disable=g-import-not-at-top
  import tiny_hf  # pylint: disable=g-import-not-at-top
  bert = tiny_hf.save_bert(tmp_path / "bert")
  topics = csv_run.write_topics(tmp_path / "topics.csv", n=120)
  run = {"train.num_steps": 6, "train.log_every": 2, "train.eval_every_steps": 6, "data.batch_size": 8,
         "data.seq_len": 32, "model.dropout": 0.0}
  losses = lambda workdir: [r["loss"] for r in _records(workdir) if r.get("split") == "train"]
  loop.train(tiny_hf.config(tmp_path, bert, topics, **run), str(tmp_path / "one"), devices=jax.devices()[:1])
  two = _launch(2, f"--workdir={tmp_path / 'two'}", *tiny_hf.flags(tmp_path, bert, topics, **run))
  assert two.returncode == 0, two.stdout + two.stderr
  assert len(losses(tmp_path / "one")) == 3
  np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=1e-4)
  step, one = checkpoint_arrays(tmp_path / "one")
  got_step, got = checkpoint_arrays(tmp_path / "two")
  assert step == got_step == 6 and len(got) == len(one)
  for a, b in zip(got, one):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


CHAT = [[{"role": "user", "content": f"What is {i} plus {j}?"}, {"role": "assistant", "content": f"{i + j}."}]
        for i in range(8) for j in range(i % 4 + 1)]


@pytest.mark.parametrize("kind", ["packed_sft", "dpo"])
def test_packed_sft_and_dpo_on_two_processes_and_eight_devices_match_one_device(tmp_path, kind):
  """A tiny chat Llama: packed chat SFT (full weights) and DPO (LoRA; the reference is the base with its
  adapters off) on 2 processes x 1 device and on 8 devices give one device's losses."""
  import tiny_hf  # pylint: disable=g-import-not-at-top
  from flaxforge.launch import configs  # pylint: disable=g-import-not-at-top
  model = tiny_hf.save_chat_llama(tmp_path / "model", [m["content"] for c in CHAT for m in c])
  if kind == "dpo":
    rows = [{"prompt": c[:1], "chosen": c[1]["content"], "rejected": "I cannot count."} for c in CHAT]
  else:
    rows = [{"messages": c} for c in CHAT]
  (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  run = {"model.pretrained": str(model), "data.path": str(tmp_path / "rows.jsonl"), "data.seq_len": 32,
         "data.batch_size": 8, "train.num_steps": 6, "train.log_every": 2, "train.eval_every_steps": 6,
         "optimizer.learning_rate": 1e-3, "optimizer.warmup_steps": 1, "train.progress_bar": False,
         **({"data.packing": True} if kind == "packed_sft" else {})}
  name = "dpo" if kind == "dpo" else "finetune_lm"
  config = configs.load(name)
  for key, value in run.items():
    section, field = key.split(".")
    config[section][field] = value
  losses = lambda workdir: [r["loss"] for r in _records(workdir) if r.get("split") == "train"]
  loop.train(config, str(tmp_path / "one"), devices=jax.devices()[:1])
  loop.train(config, str(tmp_path / "eight"))
  two = _launch(2, f"--config={name}", f"--workdir={tmp_path / 'two'}",
                *(f"--config.{k}={v}" for k, v in run.items()))
  assert two.returncode == 0, two.stdout + two.stderr
  assert len(losses(tmp_path / "one")) == 3
  np.testing.assert_allclose(losses(tmp_path / "eight"), losses(tmp_path / "one"), rtol=1e-4)
  np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=1e-4)
