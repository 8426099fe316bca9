"""The benchmarked workloads: our config (+ overrides), the matching PyTorch / Keras reference scripts
(/work/shared/bench, synthetic data of the same shapes), analytic FLOPs per example."""
import importlib
import os

from flaxforge.models.mlp import mlp_flops_per_example
from flaxforge.models.text_cnn import text_cnn_flops_per_example
from flaxforge.models.transformer import transformer_classifier_flops_per_example

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NG_DIR = os.environ.get("BENCH_20NG_DIR", "/work/shared/datasets/20newsgroups")  # holds 20news-bydate.tar.gz
TFDS_DIR = os.environ.get("BENCH_TFDS_DIR", "/tmp/flaxforge-bench-tfds")  # prepared once, reused by every run

_TEXT_CNN_REFS = dict(torch=["text_cnn_torch.py", "--variant", "eager", "--batch", "32", "--epochs", "3"],
                      keras=["text_cnn_keras.py", "--variant", "fit", "--batch", "32", "--epochs", "3"])
WORKLOADS = {
    "mlp": dict(config="benchmarks/configs/mlp.py", batch=128, epoch_steps=468,
                torch=["mlp_torch.py", "--variant", "eager", "--batch", "128", "--opt", "adam", "--epochs", "3"],
                keras=["mlp_keras.py", "--variant", "fit", "--batch", "128", "--opt", "adam", "--epochs", "3"],
                flops=mlp_flops_per_example([784, 512, 512, 10]), seq_len=0),
    "text_cnn": dict(config="benchmarks/configs/text_cnn.py", batch=32, epoch_steps=312, **_TEXT_CNN_REFS,
                     flops=text_cnn_flops_per_example(), seq_len=100),
    "transformer": dict(config="benchmarks/configs/transformer.py", batch=32, epoch_steps=20,
                        torch=["transformer_torch.py", "--variant", "eager", "--batch", "32", "--epochs", "2",
                               "--steps", "20"],
                        flops=transformer_classifier_flops_per_example(4, 256, 1024, 128, 20), seq_len=128),
}
# The seed text CNN on the real 20 Newsgroups data (launch/configs/text_cnn_20ng.py), 4 epochs of 318 steps,
# validation + checkpoint once per epoch as the seed recipe does. References: the same model on synthetic data.
if os.path.exists(os.path.join(REPO, "launch/configs/text_cnn_20ng.py")):
  WORKLOADS["text_cnn_20ng"] = dict(
      config="launch/configs/text_cnn_20ng.py", batch=32, epoch_steps=300, **_TEXT_CNN_REFS,
      flops=text_cnn_flops_per_example(), seq_len=100,
      overrides={"data.manual_dir": NG_DIR, "data.data_dir": TFDS_DIR, "train.num_steps": 1272})


# MiniLM fine-tuned on 20 Newsgroups (launch/configs/finetune_text.py), 65 steps of batch 32 at sequence 128 as
# ../shared/bench/hf_finetune_ref.py --mode=throughput runs them (the first interval, 5 steps, not timed).
MINILM_DIR = os.environ.get("BENCH_MINILM_DIR", "/work/shared/models/all-MiniLM-L6-v2")
if os.path.exists(os.path.join(REPO, "launch/configs/finetune_text.py")):
  WORKLOADS["minilm_20ng"] = dict(
      config="launch/configs/finetune_text.py", batch=32, epoch_steps=318, seq_len=128,
      overrides={"data.name": "20newsgroups", "data.manual_dir": NG_DIR, "data.data_dir": TFDS_DIR,
                 "model.pretrained": MINILM_DIR, "train.num_steps": 65, "train.log_every": 5,
                 "optimizer.warmup_steps": 4,
                 # the throughput shape (and the reference's), not the shipped 256 / mean pooling
                 "data.seq_len": 128, "model.pool": "cls"})


def config(name: str, **overrides):
  """The workload's ConfigDict, with its own and then these dotted `overrides` ("train.steps_per_call": 4)."""
  path = WORKLOADS[name]["config"]
  module = importlib.import_module(path[:-3].replace("/", "."))
  c = module.get_config()
  for key, value in {**WORKLOADS[name].get("overrides", {}), **overrides}.items():
    *parents, leaf = key.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def flags(name: str, **overrides) -> list:
  """The same overrides as flaxforge.launch.train flags."""
  return [f"--config.{k}={v}" for k, v in {**WORKLOADS[name].get("overrides", {}), **overrides}.items()]
