"""20 Newsgroups ("bydate": 11,314 train / 7,532 test posts, 20 groups) as a TFDS array_record dataset.

Token ids are stored already encoded, so training reads fixed-length int32 rows. The encoder is fitted once,
on the training part, at prepare time and saved in the dataset's metadata; every set of preprocessing options
is its own BuilderConfig (named by a hash of the options), so changing an option prepares a new copy.
"""
import dataclasses
import hashlib
import json
import socket
import sys
import tarfile
import urllib.parse
import urllib.request
import zlib
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.data import dataset, records, text

URL = "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz"
SHA256 = "8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610"
ARCHIVE = "20news-bydate.tar.gz"
GROUPS = (
    "alt.atheism", "comp.graphics", "comp.os.ms-windows.misc", "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware", "comp.windows.x", "misc.forsale", "rec.autos", "rec.motorcycles",
    "rec.sport.baseball", "rec.sport.hockey", "sci.crypt", "sci.electronics", "sci.med", "sci.space",
    "soc.religion.christian", "talk.politics.guns", "talk.politics.mideast", "talk.politics.misc",
    "talk.religion.misc",
)  # sorted: the ids scikit-learn gives them
SPLITS = ("train", "validation", "test")
_SPLIT_DEFAULTS = {"validation_fraction": 0.1, "split_seed": 0}


def documents(archive, split: str) -> Iterator[tuple[str, int]]:
  """(text, label id) of each post of the archive's "train" or "test" split, in (group, file name) order,
  as scikit-learn's `load_files` reads them. Texts are latin-1, so `text.encode("latin-1")` is the file."""
  prefix = f"20news-bydate-{split}/"
  posts = []
  with tarfile.open(archive, "r:gz") as tar:  # dl_manager.iter_archive would need TensorFlow
    for member in tar:
      parts = member.name.split("/")
      if member.isfile() and member.name.startswith(prefix) and len(parts) == 3:
        if parts[1] not in GROUPS:
          raise UserError(f"{archive}: unexpected newsgroup folder {member.name!r}; is it 20news-bydate.tar.gz?")
        posts.append((parts[1], parts[2], tar.extractfile(member).read().decode("latin-1")))
  if not posts:
    raise UserError(f"{archive} has no {prefix} files; is it 20news-bydate.tar.gz?")
  for group, _, body in sorted(posts):
    yield body, GROUPS.index(group)


def fetch_archive(dl_manager) -> epath.Path:
  """The archive from the manual dir if it is there, else downloaded (and checked) into the download dir."""
  try:
    manual = dl_manager.manual_dir / ARCHIVE
  except AssertionError:  # TFDS' default manual dir does not exist
    manual = None
  if manual is not None and manual.exists():
    check_manual(manual)
    return manual
  try:
    _check_reachable(URL)
    path = epath.Path(dl_manager.download(URL))
  except Exception as e:  # pylint: disable=broad-except  (offline: requests, DNS, HTTP errors all end here)
    raise UserError(f"cannot download {URL} ({type(e).__name__}: {e}); put {ARCHIVE} in a folder and pass "
                    "--config.data.manual_dir=FOLDER") from e
  check_sha256(path, f"delete it and rerun, or pass --config.data.manual_dir=FOLDER_WITH_{ARCHIVE}")
  return path


def check_manual(path) -> None:
  """A manual archive: the published one (by SHA-256), or at least a whole readable tar.gz (a repacked or
  test archive, with a warning); a truncated or damaged one is a UserError."""
  digest = records.file_sha256(path)
  if digest == SHA256:
    return
  try:
    with tarfile.open(path, "r:gz") as tar:
      for _ in tar:
        pass
  except (EOFError, OSError, tarfile.TarError, zlib.error) as e:
    raise UserError(f"{path} is incomplete or damaged ({type(e).__name__}; sha256 {digest[:16]}..., expected "
                    f"{SHA256[:16]}...); download it again from {URL} into {epath.Path(path).parent}") from None
  print(f"warning: {path} is not the published archive (sha256 {digest[:16]}..., expected {SHA256[:16]}...); "
        "using it as given", file=sys.stderr)


def check_sha256(path, fix: str) -> None:
  digest = records.file_sha256(path)
  if digest != SHA256:
    raise UserError(f"{path} is incomplete or another file (sha256 {digest[:16]}..., expected "
                    f"{SHA256[:16]}...); {fix}")


def _check_reachable(url: str, timeout: float = 10.0) -> None:
  """Fails fast offline: TFDS' downloader retries a refused connection for about 200 s."""
  if urllib.request.getproxies():
    return  # only the proxy knows
  parts = urllib.parse.urlsplit(url)
  socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
                           timeout=timeout).close()


@dataclasses.dataclass
class OptionsConfig(tfds.core.BuilderConfig):
  """A BuilderConfig made from preprocessing options; its name is a digest of them. `source` (a user's
  file) is where to read from, not part of the name: the options carry the file's content hash."""
  options: dict = dataclasses.field(default_factory=dict)
  source: str = ""


def builder_config(options: dict, prefix: str = "", source: str = "") -> OptionsConfig:
  digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
  name = f"{prefix}w{options.get('num_words', 0)}_l{options['seq_len']}_{digest}"
  return OptionsConfig(name=name, description=json.dumps(options, sort_keys=True), options=options, source=source)


def encoded_features(seq_len: int, label) -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({"inputs": tfds.features.Tensor(shape=(seq_len,), dtype=np.int32),
                                     "label": label})


class TwentyNewsgroups(dataset.PlainLog, tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Download {URL} and put {ARCHIVE} in the manual_dir."

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="20 Newsgroups, bydate split, as token ids; options: " + self.builder_config.description,
        features=encoded_features(self.builder_config.options["seq_len"], tfds.features.ClassLabel(names=GROUPS)),
        supervised_keys=("inputs", "label"),
        homepage="http://qwone.com/~jason/20Newsgroups/",
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    options = dict(self.builder_config.options)
    fraction, seed = options.pop("validation_fraction"), options.pop("split_seed")
    archive = fetch_archive(dl_manager)
    train, test = list(documents(archive, "train")), list(documents(archive, "test"))
    validation_idx, train_idx = text.holdout(np.array([y for _, y in train]), [fraction], seed)
    parts = text.without_validation({"train": train_idx, "validation": validation_idx}, fraction)
    text.refuse_empty(parts, "20 Newsgroups", f"validation_fraction {fraction:g} of {len(train)} training posts")
    encoder = text.fit_encoder((train[i][0] for i in train_idx), options)
    self.info.metadata["text_encoder"] = encoder.to_json()
    self.info.metadata["label_names"] = list(GROUPS)
    warning = text.vocabulary_warning(
        encoder, [train[i][0] for i in train_idx], [train[i][0] for i in validation_idx])
    if warning:
      self.info.metadata["warning"] = warning
    return {**{name: self._generate_examples(encoder, [train[i] for i in idx]) for name, idx in parts.items()},
            "test": self._generate_examples(encoder, test)}

  def _generate_examples(self, encoder, docs):
    ids = encoder.encode([body for body, _ in docs])
    for i, (row, (_, label)) in enumerate(zip(ids, docs)):
      yield i, {"inputs": row, "label": label}


def options(cfg) -> dict:
  return {**text.encoder_options(cfg), **{k: cfg.get(k, v) for k, v in _SPLIT_DEFAULTS.items()}}


def from_builder(builder, split_names=SPLITS) -> dataset.Dataset:
  """The trainer's view of a prepared encoded-text builder (its metadata holds encoder and label names):
  those of `split_names` the builder has (no validation split when prepared with validation_fraction=0)."""
  encoder = text.encoder_from_json(builder.info.metadata["text_encoder"])
  names = list(builder.info.metadata["label_names"])
  if builder.info.metadata.get("warning"):
    print(f"warning: {builder.info.metadata['warning']}", file=sys.stderr)
  return dataset.Dataset(
      splits=dataset.sources(builder, split_names),
      info={"task": "classification", "num_classes": len(names), "label_names": names,
            "vocab_size": encoder.vocab_size, "seq_len": encoder.seq_len,
            **({"pad_id": encoder.pad_id} if isinstance(encoder, text.PretrainedEncoder) else {})},
      assets={"text_encoder": encoder.to_json(), "labels": names},
      prepared_dir=str(builder.data_dir),
  )


def load(cfg) -> dataset.Dataset:
  """`cfg` is `config.data`: data_dir, manual_dir, the text options (see `text.TextEncoder`),
  validation_fraction (0.1; 0 = no validation split, all 11,314 train posts train) and split_seed (0)."""
  builder = TwentyNewsgroups(data_dir=dataset.data_dir(cfg.get("data_dir", "")), config=builder_config(options(cfg)))
  manual_dir = paths.expand(cfg.get("manual_dir", "")) or None
  if manual_dir and not builder.is_prepared() and not (epath.Path(manual_dir) / ARCHIVE).exists():
    raise UserError(f"{ARCHIVE} not found in {manual_dir}; download it from {URL} into that folder, or fix "
                    "--config.data.manual_dir")
  return from_builder(dataset.prepare(builder, manual_dir))
