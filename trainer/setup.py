"""What training and evaluation both build from a config: the data as rows, and the checkpointer."""
import dataclasses
import sys

import jax
from flax import nnx

from flaxforge import data as data_lib
from flaxforge.core.errors import UserError
from flaxforge.data import dataset as dataset_lib, pipeline, preprocess
from flaxforge.models import hf, lora
from flaxforge.trainer import checkpoint, mesh as mesh_lib
from flaxforge.trainer import workdir as workdir_lib


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
  path, seq_len = config.model.get("pretrained", None), int(config.data.get("seq_len", 0) or 0)
  if not (path and seq_len):
    return
  arch = hf.read_config(str(workdir_lib.resolve(path))).arch
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
  dataset = dataset or data_lib.load(config.data)
  info = info or dataset.info
  rows = {name: pipeline.Rows(source, in_memory=config.data.in_memory) for name, source in dataset.splits.items()}
  return Data(dataset, info, dataset.assets, rows, preprocess.make_transform(info, config.data.label_encoding),
              preprocess.make_transform(info, config.data.label_encoding, train=True, seed=config.data.seed))


def checkpointer(config, workdir, *, read_only: bool = False) -> checkpoint.Checkpointer:
  """The run's checkpointer, from `config.checkpoint` (the one place it is built). A LoRA fine-tune of a
  pretrained model keeps the frozen base out of its checkpoints and references it (`frozen_base`)."""
  c = config.checkpoint
  options = dict(best_metric=c.best_metric, best_mode=c.best_mode, frozen=frozen_base(config.model))
  if read_only:
    return checkpoint.Checkpointer(workdir / workdir_lib.CHECKPOINTS, read_only=True, **options)
  return checkpoint.Checkpointer(workdir / workdir_lib.CHECKPOINTS, keep=c.keep, keep_best=c.keep_best,
                                 async_save=c.async_save, **options)


def frozen_base(cfg) -> checkpoint.FrozenBase | None:
  """`cfg` is `config.model`: with LoRA over `pretrained` weights, the base that checkpoints reference."""
  path, is_frozen = cfg.get("pretrained", None), lora.frozen(cfg)
  if not path or is_frozen is None:
    return None
  path = str(workdir_lib.resolve(path))

  def load(abstract):  # the model half of the train state (key 0) read onto the abstract leaves' shardings
    return nnx.State({0: hf.load_params(path, abstract[0])})
  return checkpoint.FrozenBase(is_frozen, {"path": path, "sha256": hf.content_hash(path)}, load)


def mesh_for(config, devices=None):
  """The run's own mesh when this machine's devices allow it, else data parallelism over them all (a
  checkpoint restores onto any layout, so eval on a laptop still works for a run trained on a slice)."""
  try:
    return mesh_lib.make_mesh(config.mesh, devices)
  except UserError:
    return mesh_lib.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, devices if devices is not None else jax.devices())
