"""`flaxforge plan` of the shipped GPT presets (gpt_text, bfloat16 compute) on TPU and GPU targets: whether
each fits, the per-chip peak, the roofline's MFU and tokens/s, and how long the compile took on this machine.

  nice -n 10 .venv/bin/python -m benchmarks.plan_presets --targets v5e-8 v5p-8 --sizes 125m 350m 1b
  nice -n 10 .venv/bin/python -m benchmarks.plan_presets --targets h100-1 --overrides mesh.fsdp=-1 mesh.data=1

GPU targets need the gpu-plan extra. Prints one JSON line per plan, then a Markdown table (BENCHMARKS.md);
the lines are also added to benchmarks/results/plan_presets_DATE.jsonl.
"""
import argparse
import datetime
import json
import pathlib

from flaxforge.planning import targets

targets.environment()

from absl import flags  # pylint: disable=wrong-import-position

from benchmarks import records  # pylint: disable=wrong-import-position
from flaxforge.launch.configs import gpt_text  # pylint: disable=wrong-import-position
from flaxforge.planning import plan as plan_lib  # pylint: disable=wrong-import-position


def _config(size: str, overrides: list[str]):
  config = gpt_text.get_config()
  config.model.size, config.model.dtype = size, "bfloat16"
  for item in overrides:
    field, value = item.split("=", 1)
    section, name = field.split(".")
    config[section][name] = type(config[section][name])(value)
  return config


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--targets", nargs="+", default=["v5e-8", "v5p-8"])
  parser.add_argument("--sizes", nargs="+", default=["125m", "350m", "1b"])
  parser.add_argument("--overrides", nargs="*", default=[], help="FIELD=VALUE config overrides, e.g. mesh.fsdp=-1")
  args = parser.parse_args()
  flags.FLAGS.mark_as_parsed()
  rows = []
  out_path = pathlib.Path(__file__).parent / "results" / f"plan_presets_{datetime.date.today().isoformat()}.jsonl"
  for name in args.targets:
    target = targets.parse(name)
    devices = target.devices()
    for size in args.sizes:
      config = _config(size, args.overrides)
      plan = plan_lib.make(config, target, devices)
      r = plan.roofline or {}
      row = {"target": name, "size": size, "batch": config.data.batch_size, "seq_len": config.data.seq_len,
             "mesh": plan.mesh, "fits": plan.fits, "peak_gib": plan.peak() / 2**30, "mfu": r.get("mfu"),
             "tokens_per_s": r.get("tokens_per_s"), "bound": r.get("bound"),
             "compile_s": plan.compile_seconds, "overrides": args.overrides,
             "date": datetime.date.today().isoformat(), **records.machine()}
      print(json.dumps(row), flush=True)
      records.append(out_path, [row])
      rows.append(row)
  print("\n| target | preset | batch x seq | mesh | fits | peak/chip GiB | MFU <= | tokens/s | bound | compile s |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for row in rows:
    mesh = "x".join(str(v) for v in row["mesh"].values())
    mfu = f"{100 * row['mfu']:.0f}%" if row["mfu"] is not None else "-"
    rate = f"{row['tokens_per_s']:,.0f}" if row["tokens_per_s"] else "-"
    print(f"| {row['target']} | {row['size']} | {row['batch']} x {row['seq_len']} | {mesh} | "
          f"{'yes' if row['fits'] else 'no'} | {row['peak_gib']:.2f} | {mfu} | {rate} | {row['bound'] or '-'} | "
          f"{row['compile_s']:.0f} |")


if __name__ == "__main__":
  main()
