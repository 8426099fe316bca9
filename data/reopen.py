"""A trained run's data, reopened for eval and predict: exactly the prepared copy it trained on (never
re-running a builder, which would re-fit the vocabulary and labels on whatever the user's file holds now),
checked against the run's record (data/records.py)."""
import tensorflow_datasets as tfds
from etils import epath

from flaxforge import data as data_lib
from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.data import dataset as dataset_lib, records


def open_recorded(record: dict, cfg, info: dict, assets: dict, data_dir: str = "") -> dataset_lib.Dataset:
  """The splits a run trained and tested on, with the run's own `info` and `assets` (from its work directory).

  A prepared copy is opened from its recorded directory, or from `data_dir` (a folder that holds the same
  `loader/config/version` tree, where the copy was moved). Data made in memory, or a copy that is gone, is
  rebuilt from `cfg` and used only if it matches the record. UserError says what moved or changed and
  which flag points at it.
  """
  prepared = record.get("prepared_dir", "")
  directory = epath.Path(prepared)
  if data_dir:
    directory = epath.Path(paths.expand(data_dir)).joinpath(*directory.parts[-3:])
  if not prepared or not (data_dir or (directory / "dataset_info.json").exists()):
    ds = data_lib.load(cfg)
    changed = records.differences(record, records.describe(record.get("loader", ""), ds))
    if not changed:
      return ds
    if not prepared:
      raise UserError(f"the data differs from what this run was trained on ({'; '.join(changed)}); restore it "
                      "to score this run")
  if not (directory / "dataset_info.json").exists():
    raise UserError(f"the prepared data this run was trained on is not in {directory} (moved or deleted) and "
                    f"its source has changed; pass --data_dir=FOLDER that holds {'/'.join(directory.parts[-3:])}")
  builder = tfds.builder_from_directory(directory)
  ds = dataset_lib.Dataset(splits=dataset_lib.sources(builder, list(record["splits"])), info=info,
                           assets=assets, prepared_dir=str(directory))
  changed = [c for c in records.differences(record, {**records.describe(record["loader"], ds), "source_sha256":
                                             record.get("source_sha256")}) if "vocabulary" not in c]
  metadata = builder.info.metadata or {}
  if "text_encoder" in metadata and records.digest(dict(metadata["text_encoder"])) != record.get("vocabulary"):
    changed.append("the vocabulary or tokenizer")
  if "label_names" in metadata and list(metadata["label_names"]) != record.get("labels"):
    changed.append(f"labels {records.short(record.get('labels'))} -> {records.short(list(metadata['label_names']))}")
  if changed:
    raise UserError(f"the prepared data in {directory} is not what this run was trained on "
                    f"({'; '.join(changed)}); pass --data_dir=FOLDER holding the run's own copy")
  return ds
