"""Our prepared copies (TFDS array_record datasets): the builder config named by everything that shapes a copy
(options, the input files' identity), so a changed option or file prepares a new copy and an unchanged one is
read from disk at once; the base of builders whose rows are computed at prepare time; and the bookkeeping that
deletes the copies of a user's file's earlier contents unless a run still uses them."""
import dataclasses
import json
import pathlib
import re

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.data import dataset, prepared as prepared_lib, records


@dataclasses.dataclass
class OptionsConfig(tfds.core.BuilderConfig):
  """A BuilderConfig made from preprocessing options; its name is a digest of them. `source` (a user's
  file) is where to read from, not part of the name: the options carry the file's identity."""
  options: dict = dataclasses.field(default_factory=dict)
  source: str = ""


def builder_config(options: dict, source: str = "", label: str = "") -> OptionsConfig:
  """The config named `<source stem>_<label>_<digest of options>`, leaving out an empty stem or label
  (`o_<digest>` when both are); `options` must be JSON-serialisable, `label` a readable summary of them."""
  digest = records.digest(options)[:12]
  stem = re.sub(r"[^a-z0-9]+", "_", pathlib.Path(source).stem.lower())[:24] if source else ""
  name = "_".join(part for part in (stem, label, digest) if part) if stem or label else f"o_{digest}"
  return OptionsConfig(name=name, description=json.dumps(options, sort_keys=True), options=options, source=source)


class ArrayBuilder(dataset.PlainLog, tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder whose `_split_generators` computes every split's rows as arrays and hands each split's
  (inputs, labels) to `_generate_examples`. A subclass gives DESCRIPTION (and HOMEPAGE) and `features()`:
  the "inputs" and "label" feature connectors; its snake_case class name names its folder."""
  VERSION = tfds.core.Version("1.0.0")
  DESCRIPTION = ""
  HOMEPAGE = None

  def features(self) -> tuple[tfds.features.FeatureConnector, tfds.features.FeatureConnector]:
    raise NotImplementedError

  def _info(self):
    inputs, label = self.features()
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{self.DESCRIPTION}; options: {self.builder_config.description}",
        features=tfds.features.FeaturesDict({"inputs": inputs, "label": label}),
        supervised_keys=("inputs", "label"),
        homepage=self.HOMEPAGE,
        metadata=tfds.core.MetadataDict(),
    )

  def _generate_examples(self, inputs, labels):
    for i, (row, label) in enumerate(zip(inputs, labels)):
      yield i, {"inputs": row, "label": label}


def ids_feature(seq_len: int) -> tfds.features.Tensor:
  """Token ids int32 [seq_len]: the inputs of a prepared text copy."""
  return tfds.features.Tensor(shape=(seq_len,), dtype=np.int32)


def existing_path(value: str, flag: str, what: str = "file") -> pathlib.Path:
  """`value` as an absolute path that exists, else a UserError naming --config.data.<flag>."""
  if not value:
    raise UserError(f"no input {what}; pass --config.data.{flag}=PATH")
  path = pathlib.Path(value).expanduser().resolve()
  if not path.exists():
    raise UserError(f"{value} not found; pass --config.data.{flag}=AN_EXISTING_{what.upper()}")
  return path


def identity(files) -> list:
  """(name, size, mtime_ns) of each file: a changed file changes the prepared copy's name."""
  return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def forget_earlier_copies(prepared, path, sha256: str):
  """Marks `prepared` as made from `path` and deletes the copies made from that path's earlier contents,
  except those a run still trains or is evaluated on (data/prepared.py `note_run`, `uses`)."""
  prepared = epath.Path(prepared)
  (prepared / prepared_lib.SOURCE).write_text(json.dumps({"path": str(path), "sha256": sha256, "runs": []}))
  for marker in prepared.parent.parent.glob(f"*/*/{prepared_lib.SOURCE}"):
    made_from = json.loads(marker.read_text())
    if made_from["path"] == str(path) and made_from["sha256"] != sha256 and not any(
        prepared_lib.uses(run, marker.parent) for run in made_from.get("runs", [])):
      marker.parent.rmtree()  # the version folder; then its config folder, when nothing else is in it
      paths.remove_empty([marker.parent.parent])
