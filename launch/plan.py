"""Plan a run before paying for it: flaxforge plan --config=NAME|FILE --target=TARGET [--search] [--out=FILE]

Other flags: --slices=N (TPU multi-slice) and --config.FIELD=VALUE overrides, as for train.

Compiles the train step `flaxforge train` would run, for a TPU slice or GPU node (v5e-8, v5p-64, v6e-256,
h100-8, ...), on this machine: no accelerator needed and no weights read. It reports each chip's memory
(arguments, temporaries, peak) against the chip's, whether the run fits, FLOPs, collectives and a roofline
step time with the MFU and tokens/s it implies. --search compiles the settings worth trying (mesh split,
per-chip batch, gradient accumulation, a transformer's remat policy) and ranks those that fit, each as
--config overrides for train.

Exit status: 0 fits (--search: some setting fits), 1 does not fit (the last line names the levers), 2 bad
input. TPU targets need `pip install 'flaxforge[tpu-plan]'`, GPU targets 'flaxforge[gpu-plan]'.
"""
import json
import os
import sys

from absl import flags

from flaxforge.core.errors import UserError
from flaxforge.launch import common
from flaxforge.launch import flags as cli_flags
from flaxforge.planning import targets

targets.environment()  # before anything starts JAX
# A compile-only executable cannot be written to JAX's persistent cache or read back from it ("PjRtCompiler
# must be constructed with a Client"): planning compiles afresh.
os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"

CONFIG = cli_flags.define_config_flag()
TARGET = flags.DEFINE_string("target", None, "What to plan for: v4-N, v5e-N, v5p-N, v6e-N (TPU), h100-N, h200-N.")
SLICES = flags.DEFINE_integer("slices", 1, "TPU slices of --target, joined by the data-centre network.")
SEARCH = flags.DEFINE_bool("search", False,
                           "Rank the settings that fit (mesh split, per-chip batch, accumulation, remat).")
OUT = flags.DEFINE_string("out", None, "Also write the plan (or the search's plans) here as JSON.")


def _write_json(path: str, value) -> None:
  """Writes `value` to `path` whole or not at all (a temporary file renamed over it)."""
  partial = f"{path}.partial"
  try:
    with open(partial, "w", encoding="utf-8") as f:
      json.dump(value, f, indent=2, allow_nan=False)
    os.replace(partial, path)
  except OSError as e:
    raise UserError(f"cannot write {path} ({e.strerror}); pass --out=A_WRITABLE_PATH") from None


def _search(config, target, title: str) -> int:
  from flaxforge.planning import plan as plan_lib, search  # pylint: disable=g-import-not-at-top
  print(f"searching {title} on {target.describe()} (each line is one compile)", file=sys.stderr)
  plans = search.search(config, target)
  best = search.ranked(plans, config.data.batch_size)
  if OUT.value:
    _write_json(OUT.value, [p.to_json() for p in plans])
  if not best:
    closest = min(plans, key=lambda p: p.peak())
    print(f"no setting fits on {target.name}: {plan_lib.verdict_line(closest, search_hint=False).split(': ', 1)[1]}")
    return 1
  print(f"{len(best)} of {len(plans)} compiled settings fit on {target.name}, best predicted throughput first:")
  print(f"{'rank':>4} {'tokens/s':>10} {'MFU<=':>6} {'peak GiB':>9}  overrides for flaxforge train")
  for rank, p in enumerate(best, 1):
    r = p.roofline
    rate = r.get("tokens_per_s", r["examples_per_s"])
    print(f"{rank:>4} {rate:>10,.0f} {100 * r['mfu']:>5.0f}% {p.peak() / 2**30:>9.2f}  {' '.join(p.overrides)}")
  return 0


def main(argv):
  if len(argv) > 1:
    raise UserError(f"unexpected arguments {argv[1:]}; config fields are set as --config.FIELD=VALUE")
  if not TARGET.value:
    raise UserError(f"--target is required, e.g. --target=v5e-8; known targets: {targets.known()}")
  target = targets.parse(TARGET.value, SLICES.value)
  config = CONFIG.value
  title = os.path.basename(flags.FLAGS["config"].config_filename).removesuffix(".py")
  if SEARCH.value:
    sys.exit(_search(config, target, title))
  from flaxforge.planning import plan as plan_lib, report  # pylint: disable=g-import-not-at-top
  plan = plan_lib.make(config, target)
  if OUT.value:
    _write_json(OUT.value, plan.to_json())
  print(report.text(plan, title))
  sys.exit(0 if plan.fits else 1)


if __name__ == "__main__":
  common.run(main)
