"""Prepared datasets: flaxforge data list | clean [--older_than=DAYS] [--data_dir=DIR]

A run's data is prepared once (TFDS array_record: token ids, image pixels, table features) into the data
directory, data.data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets, and reused by every run with the
same data and options. `list` shows each prepared copy: its size, age (since it was prepared or a run last
started on it), the file it was made from, and the runs whose data.json records it. `clean` removes the copies
no run records (with --older_than, only those older than DAYS). A run whose copy was removed prepares it again
from its source when it next trains or is evaluated, or says in one line that its source has changed.
"""
import os

from absl import flags

from flaxforge.data import prepared
from flaxforge.launch import common

USAGE = "usage: flaxforge data list | clean [--older_than=DAYS] [--data_dir=DIR]"
DATA_DIR = flags.DEFINE_string("data_dir", "", "The data directory (default: $TFDS_DATA_DIR, else "
                               "~/tensorflow_datasets).")
OLDER_THAN = flags.DEFINE_float("older_than", 0.0, "clean: only copies older than this many days.")


def _size(n: int) -> str:
  for unit in ("B", "KB", "MB", "GB"):
    if n < 1000 or unit == "GB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1000
  return ""


def _line(copy: prepared.Copy, data_dir) -> str:
  where = os.path.relpath(str(copy.path), str(data_dir))
  source = f"  from {copy.source}" if copy.source else ""
  runs = f"; used by {', '.join(copy.runs)}" if copy.runs else ""
  return f"{_size(copy.size):>9}  {copy.age_days:4.0f} days  {where}{source}{runs}"


def main(argv):
  if argv[1:] not in (["list"], ["clean"]):
    raise common.UserError(USAGE)
  if OLDER_THAN.value < 0:
    raise common.UserError(f"--older_than={OLDER_THAN.value} is out of range; use --older_than=0 or more (days)")
  data_dir = prepared.folder(DATA_DIR.value)
  found = prepared.copies(data_dir)
  if argv[1] == "list":
    print(f"prepared copies in {data_dir} (data.data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets):")
    for copy in found:
      print(_line(copy, data_dir))
    print(f"{len(found)} prepared cop{'y' if len(found) == 1 else 'ies'}, {_size(sum(c.size for c in found))}; "
          "flaxforge data clean removes those no run uses")
    return
  removed = [c for c in found if not c.runs and c.age_days >= OLDER_THAN.value]
  for copy in removed:
    prepared.remove(copy.path)
    print(f"removed {os.path.relpath(str(copy.path), str(data_dir))} ({_size(copy.size)}, {copy.age_days:.0f} days old)")
  kept = sum(1 for c in found if c.runs)
  print(f"removed {len(removed)} prepared cop{'y' if len(removed) == 1 else 'ies'} "
        f"({_size(sum(c.size for c in removed))}) from {data_dir}; kept {kept} cop{'y' if kept == 1 else 'ies'} "
        f"a run uses")


if __name__ == "__main__":
  common.run(main)
