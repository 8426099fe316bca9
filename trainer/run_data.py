"""The data as the trainer reads it, built from a config by training and evaluation alike: each split's rows
and the host-side transforms (`load_data`), and the one check that must come before any data is prepared
(`check_positions`)."""
import dataclasses
import sys

from flaxforge import data as data_lib
from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.data import dataset as dataset_lib, pipeline, preprocess
from flaxforge.models import fields as model_fields, hf
from flaxforge.trainer import fields


@dataclasses.dataclass
class Data:
  """A dataset as the trainer reads it: each split's rows, the JSON metadata and assets, and the
  host-side transform (label encoding, normalisation) applied to every batch; `train_transform` adds the
  training split's random augmentation, when the dataset has one."""
  dataset: dataset_lib.Dataset
  info: dict
  assets: dict
  rows: dict[str, pipeline.Rows]
  transform: object
  train_transform: object

  def split(self, name: str) -> pipeline.Rows:
    if name not in self.rows:
      raise UserError(f"split {name!r} not in the dataset; choose one of: {', '.join(self.rows)}")
    return self.rows[name]


def check_positions(config) -> None:
  """Before any data is prepared: refuses a data.seq_len beyond a pretrained model's learned position table
  (GPT-2's n_positions, BERT's max_position_embeddings), and warns (stderr) past the positions a rotary
  model was trained on, which it runs but usually with worse results."""
  path, seq_len = model_fields.Pretrained.read(config.model).pretrained, fields.declared_value(config, "data.seq_len")
  if not (path and seq_len):
    return
  arch = hf.read_config(paths.expand(path)).arch
  if seq_len <= arch.max_len:
    return
  if arch.position == "learned":
    raise UserError(f"data.seq_len {seq_len} exceeds the {arch.max_len} positions of {path} (a learned position "
                    f"table); pass --config.data.seq_len={arch.max_len} or less")
  print(f"warning: data.seq_len {seq_len} exceeds the {arch.max_len} positions {path} was trained on "
        "(max_position_embeddings); rotary positions run past them, usually with worse results", file=sys.stderr)


def load_data(config, *, info: dict | None = None, dataset=None) -> Data:
  """`config.data`'s dataset (or `dataset`, already opened: a trained run's recorded splits) as rows.
  `info`: a trained run's own metadata, which the label transform then follows (so eval treats labels
  exactly as training did)."""
  feed = fields.Feed.of(config)
  dataset = dataset or data_lib.load(config.data)
  info = info or dataset.info
  rows = {name: pipeline.Rows(source, in_memory=feed.in_memory) for name, source in dataset.splits.items()}
  return Data(dataset, info, dataset.assets, rows, preprocess.make_transform(info, feed.label_encoding),
              preprocess.make_transform(info, feed.label_encoding, train=True, seed=feed.seed))
