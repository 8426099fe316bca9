"""The work directory is one run: its JSON files (the resolved config, the data's record, the dataset info
and the assets beside the checkpoints), its checkpointer, its identity check on every launch, and its
one-writer lease.

Everything a later eval or predict needs is here as JSON; nothing is pickled. A rerun may change only
CHANGEABLE fields (how long and how visibly it trains, where files lie, the device layout); any other
field, or other data, is another run and is refused in one line.
"""
import atexit
import itertools
import json
import uuid

import jax
import ml_collections
from etils import epath

from flaxforge import data as data_lib
from flaxforge.core import paths, run_config
from flaxforge.core.run_config import read_json  # also the reader of callers' run files
from flaxforge.core.errors import UserError
from flaxforge.data import prepared, records
from flaxforge.trainer import checkpoint, fields, lease as lease_lib, preemption, state as state_lib

CHECKPOINTS = "checkpoints"
LEASE = "lease.json"
DATA_RECORD = records.RECORD_FILE
PATH_FIELDS = ("data.path", "data.data_dir", "data.manual_dir")
# Path fields that define the run, expanded like PATH_FIELDS (so eval finds them from any folder); a run that
# recorded one as given (before this was done) compares equal to its expansion.
RUN_PATH_FIELDS = ("model.pretrained", "data.tokenizer_path", "data.image_processor", "train.init_from")
# Module fields: a user's module is recorded as its file, a file path made absolute (core/imports.py
# `recorded`), so eval, predict, serve and export find it from any folder; built-in names stay names.
MODULE_FIELDS = ("model.name", "data.name")
# Config fields (or sections) a resume may change; anything else defines the run. The learning rate and
# its schedule define it: Adam's moments and the schedule's position were built for them (README). Early
# stopping's patience may change (a stopped run given more patience goes on); its metric, mode and
# min_delta define which checkpoint is best. init_from defines where the run started.
CHANGEABLE = ("train.num_epochs", "train.num_steps", "train.time_limit_minutes", "train.log_every",
              "train.eval_every_steps", "train.steps_per_call", "train.progress_bar", "train.on_nonfinite",
              "train.early_stopping.patience",
              "checkpoint.every_steps", "checkpoint.keep", "checkpoint.keep_best", "checkpoint.async_save",
              "data.eval_batch_size", "data.in_memory", "data.on_device", "data.threads", "data.prefetch",
              *PATH_FIELDS, "mesh", "profile", "malloc", "xla_flags")
_REASONS = {"data.batch_size": " (the data position is a step number)"}
_LEASES: dict[str, lease_lib.Lease] = {}
_CREATED: list[epath.Path] = []  # folders this process made for a work directory, deepest first


def resolve(path: str) -> epath.Path:
  """A local path made absolute (Orbax refuses relative ones), `~` and $VARS expanded; URIs as given."""
  return epath.Path(paths.expand(path))


def prepare(path: str) -> epath.Path:
  """Creates the work directory, proves it is writable and takes its lease (process 0, for all processes),
  or says how to fix it."""
  workdir = resolve(path)
  error = ""
  if jax.process_index() == 0:
    probe = workdir / f".write-test-{uuid.uuid4().hex}"
    try:
      # the local folders mkdir is about to make, deepest first
      made = [] if "://" in str(workdir) else list(
          itertools.takewhile(lambda p: not p.exists(), (workdir, *workdir.parents)))
      workdir.mkdir(parents=True, exist_ok=True)
      _CREATED.extend(p for p in made if p not in _CREATED)
      probe.write_text("ok")
      probe.unlink()
      _LEASES.setdefault(str(workdir), lease_lib.Lease(workdir / LEASE)).acquire()
    except OSError as e:
      error = f"cannot write the work directory {workdir} ({e.strerror or e}); pass a writable --workdir"
    except UserError as e:
      error = str(e)
  if preemption.any_process(bool(error)):  # every process stops, not only process 0
    raise UserError(error or f"process 0 cannot use {workdir} (see its output); pass another --workdir")
  return workdir


def release(workdir: epath.Path) -> None:
  """Gives up the lease (also done at exit; a killed process leaves a lease the next run takes over)."""
  held = _LEASES.pop(str(workdir), None)
  if held is not None:
    held.release()


def _at_exit():
  for workdir in list(_LEASES):
    release(workdir)
  paths.remove_empty(_CREATED)  # a run that refused to start leaves no folder behind


atexit.register(_at_exit)


def checkpointer(workdir: epath.Path, config, *, read_only: bool = False) -> checkpoint.Checkpointer:
  """The run's checkpointer in <workdir>/checkpoints, from `config.checkpoint` (the one place it is built). A
  LoRA fine-tune of pretrained weights keeps the frozen base out of its checkpoints and references it."""
  c = fields.Checkpoint.of(config)
  options = dict(best_metric=c.best_metric, best_mode=c.best_mode, frozen=state_lib.frozen_base(config.model))
  if read_only:
    return checkpoint.Checkpointer(workdir / CHECKPOINTS, read_only=True, **options)
  return checkpoint.Checkpointer(workdir / CHECKPOINTS, keep=c.keep, keep_best=c.keep_best,
                                 async_save=c.async_save, **options)


def check_config(workdir: epath.Path, config) -> tuple[ml_collections.ConfigDict, dict]:
  """`config` with its path fields made absolute and its modules recorded (MODULE_FIELDS), and {field: [old,
  new]} of the CHANGEABLE fields that differ from the run's (for the metrics' config change record). Any other
  difference is refused."""
  from flaxforge.models import registry  # pylint: disable=g-import-not-at-top  (flax: predict loads this file)
  recorders = {"model.name": registry.recorded, "data.name": data_lib.recorded}
  config = ml_collections.ConfigDict(config.to_dict())
  for field in (*PATH_FIELDS, *RUN_PATH_FIELDS, *MODULE_FIELDS):
    section, name = field.split(".")
    if section in config and isinstance(config[section].get(name), str):
      config[section][name] = recorders.get(field, paths.expand)(config[section][name])
  if not _has_checkpoints(workdir) or not run_config.exists(workdir):
    return config, {}
  old, new = _flat(read_json(workdir / run_config.FILE)), _flat(json.loads(config.to_json_best_effort()))
  old.update({k: paths.expand(old[k]) for k in RUN_PATH_FIELDS if isinstance(old.get(k), str)})  # recorded as given
  old.update({k: recorders[k](old[k]) for k in MODULE_FIELDS if isinstance(old.get(k), str)})  # before recording
  changed = {k: [old.get(k), new.get(k)] for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}
  # A field only one side has is a field this version added or dropped, at its default: accepted, recorded.
  refused = [f"{k}: {_show(a)} -> {_show(b)}{_REASONS.get(k, '')}" for k, (a, b) in changed.items()
             if not k.startswith(CHANGEABLE) and k in old and k in new]
  if refused:
    raise UserError(f"{workdir} holds a run with other settings ({'; '.join(refused)}); rerun with the run's "
                    "values (or without --config, which resumes with them), or train into a new --workdir, "
                    f"starting from this run's parameters: --workdir=NEW --config.train.init_from={workdir}")
  return config, changed


def check_source(workdir: epath.Path, config) -> None:
  """Refuses, before any data is prepared (which can take minutes), a run whose recorded input file
  (data.path, a CSV, JSONL or table) now has other content: the quick part of `check_data`."""
  path = fields.declared_value(config, "data.path")
  if not (path and _has_checkpoints(workdir) and (workdir / DATA_RECORD).exists()):
    return
  recorded, path = read_json(workdir / DATA_RECORD), epath.Path(paths.expand(path))
  if recorded.get("source_sha256") and path.is_file():
    _refuse_other_data(workdir, records.differences(
        recorded, {**recorded, "source": str(path), "source_sha256": records.file_sha256(path)}))


def check_data(workdir: epath.Path, config, dataset) -> dict:
  """The data's record (records.describe); refused if it differs from what the run's checkpoints saw."""
  record = records.describe(config.data.name, dataset)
  if _has_checkpoints(workdir) and (workdir / DATA_RECORD).exists():
    _refuse_other_data(workdir, records.differences(read_json(workdir / DATA_RECORD), record))
  return record


def _refuse_other_data(workdir: epath.Path, changed: list[str]) -> None:
  if changed:
    raise UserError(f"{workdir} holds a run trained on other data ({'; '.join(changed)}); restore the run's "
                    "data, or train into a new --workdir")


def open_data(workdir: epath.Path, config, data_dir: str = ""):
  """The splits the run trained and tested on (its recorded prepared copy), never a re-fit of the user's
  file; `data_dir` is where that copy now lies if it moved. Runs from before the record: `data.load`."""
  if not (workdir / DATA_RECORD).exists():
    return data_lib.load(config.data)
  assets = {p.stem: json.loads(p.read_text()) for p in (workdir / "assets").glob("*.json")}
  from flaxforge.data import reopen  # pylint: disable=g-import-not-at-top  (TFDS: eval alone needs it)
  return reopen.open_recorded(read_json(workdir / DATA_RECORD), config.data, load_info(workdir), assets, data_dir)


def _has_checkpoints(workdir: epath.Path) -> bool:
  directory = workdir / CHECKPOINTS
  return directory.exists() and any(p.name.isdigit() for p in directory.iterdir())


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = json.loads(json.dumps(value))  # tuples and lists compare alike
  return out


def _show(value) -> str:
  return "(absent)" if value is None else json.dumps(value)


def write_json(path: epath.Path, value) -> None:
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True))


def save_run(workdir: epath.Path, config, info: dict, assets: dict, data_record: dict) -> None:
  write_json(workdir / run_config.FILE, json.loads(config.to_json_best_effort()))
  write_json(workdir / DATA_RECORD, data_record)
  if data_record.get("prepared_dir") and jax.process_index() == 0:
    prepared.note_run(data_record["prepared_dir"], workdir)  # so a changed file's new copy keeps this run's
  write_json(workdir / "info.json", info)
  for name, value in assets.items():
    write_json(workdir / "assets" / f"{name}.json", value)


def load_config(workdir: epath.Path) -> ml_collections.ConfigDict:
  return run_config.read(workdir)


def recorded_splits(workdir: epath.Path) -> list[str] | None:
  """The splits the run's data record lists (no "validation" after data.validation_fraction=0); None for a
  run from before the record."""
  path = workdir / DATA_RECORD
  if not path.exists():
    return None
  order = ("train", "validation", "test")  # data.json's keys are sorted; name them in the usual order
  return sorted(read_json(path).get("splits", {}), key=lambda s: (order.index(s) if s in order else len(order), s))


def missing_split(workdir: epath.Path, split: str, flag: str) -> str | None:
  """One line when the run's recorded data has no `split` (which `flag` asks for), naming the splits it has;
  None when it has it, or when no record says."""
  splits = recorded_splits(workdir)
  if splits is None or split in splits:
    return None
  refit = split == "validation" and run_config.exists(workdir) and \
      fields.declared_value(load_config(workdir), "data.validation_fraction") == 0
  why = " (data.validation_fraction=0: every training row trained, none was held out)" if refit else ""
  return (f"{flag} needs the {split} split, which the run in {workdir} does not have{why}; its splits: "
          f"{', '.join(splits)}")


def load_info(workdir: epath.Path) -> dict:
  return read_json(workdir / "info.json")


def load_asset(workdir: epath.Path, name: str):
  return read_json(workdir / "assets" / f"{name}.json")
