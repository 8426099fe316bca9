"""The raw records in benchmarks/results/: written whole, and what the machine was doing.

A record file is rewritten, never appended to in place: `append` writes the old lines plus the new ones to
a temporary file beside it and renames it over the old one, so a reader (or a run killed mid-write) never
sees a line cut off (eight lines of finetune_throughput_minilm_2026-11-30b.jsonl were, before this).
"""
import json
import os
import pathlib
import platform


def append(path, rows) -> None:
  """Adds `rows` (dicts) to the JSON-lines file at `path` as whole lines, atomically (temporary file + rename)."""
  path = pathlib.Path(path)
  old = path.read_text(encoding="utf-8") if path.exists() else ""
  if old and not old.endswith("\n"):
    old += "\n"
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_text(old + "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
  os.replace(tmp, path)


def write_json(path, value) -> None:
  """One JSON document at `path`, atomically (temporary file + rename)."""
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_text(json.dumps(value) + "\n", encoding="utf-8")
  os.replace(tmp, path)


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo), else what `platform` knows."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      return next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), platform.machine())
  except OSError:
    return platform.processor() or platform.machine()


def machine() -> dict:
  """What a record says about where it was measured: the CPU, its cores, and the 1/5/15-minute load averages
  at the time (on a shared machine, how much else ran)."""
  return {"machine": cpu_model(), "cpus": os.cpu_count(),
          "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}
