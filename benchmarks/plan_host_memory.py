"""Host memory (RSS) of one process that plans GPT-350m on v5p-8 four times (batch 4, 8, 12, 16), with or
without jax.clear_caches() after each plan: does a long `plan --search` hold its compiles?

  .venv/bin/python -m benchmarks.plan_host_memory keep; .venv/bin/python -m benchmarks.plan_host_memory clear
"""
import gc
import os
import sys

from flaxforge.planning import targets

targets.environment()

import jax  # pylint: disable=wrong-import-position
from absl import flags  # pylint: disable=wrong-import-position

from flaxforge.launch.configs import gpt_text  # pylint: disable=wrong-import-position
from flaxforge.planning import plan as plan_lib  # pylint: disable=wrong-import-position


def rss_gib() -> float:
  """This process's resident memory (/proc/self/statm), GiB."""
  with open("/proc/self/statm", encoding="utf-8") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def main():
  flags.FLAGS.mark_as_parsed()
  clear = sys.argv[1] == "clear"
  target = targets.parse("v5p-8")
  devices = target.devices()
  for i, batch in enumerate((4, 8, 12, 16)):
    config = gpt_text.get_config()
    config.model.size, config.model.dtype, config.data.batch_size = "350m", "bfloat16", batch
    plan = plan_lib.make(config, target, devices)
    if clear:
      jax.clear_caches()
    gc.collect()
    print(f"{'clear' if clear else 'keep '} plan {i + 1} batch {batch}: rss {rss_gib():.2f} GiB, "
          f"compile {plan.compile_seconds:.0f} s", flush=True)


if __name__ == "__main__":
  main()
