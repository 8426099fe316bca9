"""What every data source hands the trainer: random-access splits, JSON metadata, JSON assets."""
import dataclasses
import os
from typing import Any, Sequence

import jax
import tensorflow_datasets as tfds
from etils import epath
from jax.experimental import multihost_utils

from flaxforge.core.errors import UserError


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


def data_dir(configured: str) -> epath.Path:
  """The TFDS data directory: the config's, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  path = configured or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
  return epath.Path(os.path.expanduser(path))


def prepare(builder: tfds.core.DatasetBuilder, manual_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """Writes the dataset as array_record once (process 0), then reopens it from its directory everywhere.

  Reopening with `builder_from_directory` needs only the files, not the builder's code or TensorFlow.
  """
  if jax.process_index() == 0 and not builder.is_prepared():
    tfds.disable_progress_bar()
    config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    try:
      builder.download_and_prepare(file_format="array_record", download_config=config)
    except PermissionError as e:
      raise UserError(f"cannot write the data directory {builder.data_dir}: {e.strerror}; "
                      "pass --config.data.data_dir=A_WRITABLE_DIR") from e
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"prepare {builder.name}")
  return tfds.builder_from_directory(builder.data_dir)


def sources(builder: tfds.core.DatasetBuilder, split_names: Sequence[str]) -> dict[str, Sequence]:
  return {name: builder.as_data_source(split=name) for name in split_names}
