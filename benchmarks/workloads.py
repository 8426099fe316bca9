"""The benchmarked workloads: our config, the matching PyTorch reference script, analytic FLOPs per example."""
import importlib
import os

from trainer import flops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKLOADS = {
    "mlp": dict(config="benchmarks/configs/mlp.py", batch=128, epoch_steps=468,
                torch=["mlp_torch.py", "--batch", "128", "--opt", "adam", "--epochs", "3"],
                flops=flops.mlp_flops_per_example([784, 512, 512, 10]), seq_len=0),
    "text_cnn": dict(config="benchmarks/configs/text_cnn.py", batch=32, epoch_steps=312,
                     torch=["text_cnn_torch.py", "--batch", "32", "--epochs", "3"],
                     flops=flops.text_cnn_flops_per_example(), seq_len=100),
    "transformer": dict(config="benchmarks/configs/transformer.py", batch=32, epoch_steps=20,
                        torch=["transformer_torch.py", "--batch", "32", "--epochs", "2", "--steps", "20"],
                        flops=flops.transformer_classifier_flops_per_example(4, 256, 1024, 128, 20), seq_len=128),
}
# The seed text CNN on the real 20 Newsgroups data, once its config exists (data/newsgroups.py, models/text_cnn.py).
if os.path.exists(os.path.join(REPO, "launch/configs/text_cnn_20ng.py")):
  WORKLOADS["text_cnn_20ng"] = dict(config="launch/configs/text_cnn_20ng.py", batch=32, epoch_steps=300,
                                    torch=None, flops=flops.text_cnn_flops_per_example(), seq_len=100)
# TODO(bench): a real-data transformer workload (models/bert.py on 20 Newsgroups) once a config for it exists.


def config(name: str, **overrides):
  """The workload's ConfigDict, with dotted `overrides` ("train.steps_per_call": 4) applied."""
  path = WORKLOADS[name]["config"]
  module = importlib.import_module(path[:-3].replace("/", "."))
  c = module.get_config()
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = c
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c
