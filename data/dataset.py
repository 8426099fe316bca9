"""What every data source hands the trainer: random-access splits, JSON metadata, JSON assets.

JAX and TFDS are imported where a dataset is prepared, not with this module: predict reads a run's text
encoder (data/text.py, which names this module) without either.
"""
import dataclasses
import sys
from typing import Any, Sequence

from etils import epath

from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.data import fields, prepared

SPLITS = ("train", "validation", "test")  # the split names a loader may hand the trainer, in this order


@dataclasses.dataclass
class Dataset:
  """`splits[name][i]` is an example dict: `inputs` (model input) and `label`.

  `info` describes the data to the model builder (num_classes, vocab_size, seq_len, label_names, task).
  `assets` are JSON-serialisable objects that eval and predict need to treat new inputs exactly as
  training did (a text encoder's vocabulary, label names); the trainer writes them beside the checkpoint.
  """
  splits: dict[str, Sequence[dict[str, Any]]]
  info: dict[str, Any]
  assets: dict[str, Any] = dataclasses.field(default_factory=dict)
  # Where the splits were read from, so eval can reopen exactly them: the prepared TFDS directory (absolute;
  # "" when the splits are made in memory) and the user's file ({"path", "sha256"}) when there is one.
  prepared_dir: str = ""
  source: dict[str, Any] = dataclasses.field(default_factory=dict)
  # What preparing a user's file found (data/splits.py Report.to_json): warnings and the rows dropped; the
  # run's data.json keeps it.
  report: dict[str, Any] = dataclasses.field(default_factory=dict)


class PlainLog:
  """Mixed into our builders before `tfds.core.GeneratorBasedBuilder`: one honest line instead of TFDS'
  "Downloading and preparing dataset Unknown size (download: Unknown size...)" for a local file."""

  def _log_download_bytes(self):
    print(f"preparing {self.name} in {self.data_dir} (once: later runs reuse it)", file=sys.stderr)

  def _log_download_done(self):
    pass


def data_dir(cfg) -> epath.Path:
  """The TFDS data directory: `config.data`'s data_dir, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  return prepared.folder(fields.Dataset.read(cfg).data_dir)


def prepare(builder, manual_dir: str | None = None):
  """Writes the dataset (a tfds.core.DatasetBuilder) as array_record once (process 0), then reopens it from its
  directory everywhere: the builder `builder_from_directory` makes.

  Reopening with `builder_from_directory` needs only the files, not the builder's code or TensorFlow.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0 and not builder.is_prepared():
    tfds.disable_progress_bar()
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    try:
      builder.download_and_prepare(file_format="array_record", download_config=config)
    except PermissionError as e:
      raise UserError(f"cannot write the data directory {builder.data_dir}: {e.strerror}; "
                      "pass --config.data.data_dir=A_WRITABLE_DIR") from e
    except BaseException:
      _remove_empty_folders(builder)  # a failed preparation (a bad row, a stop) leaves no empty copy behind
      raise
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"prepare {builder.name}")
  return tfds.builder_from_directory(builder.data_dir)


def _remove_empty_folders(builder) -> None:
  """The folders a failed preparation made and left empty: the version, config and dataset folders, and
  TFDS's download folders beside them."""
  version = epath.Path(builder.data_dir)
  folders = [version, version.parent] + ([version.parent.parent] if builder.builder_config else [])
  downloads = folders[-1].parent / "downloads"
  paths.remove_empty(folders + [downloads / "extracted", downloads])


def sources(builder, split_names: Sequence[str]) -> dict[str, Sequence]:
  """The splits among `split_names` of `builder` (a tfds.core.DatasetBuilder), in that order. A split the
  prepared copy lacks is left out (a builder writes no validation split for `data.validation_fraction=0`:
  TFDS cannot write an empty one)."""
  return {name: builder.as_data_source(split=name) for name in split_names if name in builder.info.splits}
