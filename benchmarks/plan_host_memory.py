"""Host memory (RSS) of one process that plans GPT-350m on v5p-8 four times (batch 4, 8, 12, 16), with or
without jax.clear_caches() after each plan: does a long `plan --search` hold its compiles?

  .venv/bin/python -m benchmarks.plan_host_memory keep; .venv/bin/python -m benchmarks.plan_host_memory clear
"""
import os
import sys
from flaxforge.planning import targets
targets.environment()
from absl import flags
flags.FLAGS.mark_as_parsed()
import jax
from flaxforge.launch.configs import gpt_text
from flaxforge.planning import plan as plan_lib
clear = sys.argv[1] == "clear"
target = targets.parse("v5p-8"); devices = target.devices()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
for i, batch in enumerate((4, 8, 12, 16)):
    c = gpt_text.get_config(); c.model.size, c.model.dtype = "350m", "bfloat16"; c.data.batch_size = batch
    p = plan_lib.make(c, target, devices)
    if clear: jax.clear_caches()
    import gc; gc.collect()
    print(f"{'clear' if clear else 'keep '} plan {i+1} batch {batch}: rss {rss():.2f} GiB, compile {p.compile_seconds:.0f} s", flush=True)
