"""20 Newsgroups ("bydate": 11,314 train / 7,532 test posts, 20 groups) as a TFDS array_record dataset.

Token ids are stored already encoded, so training reads fixed-length int32 rows. The encoder is fitted once,
on the training part, at prepare time and saved in the dataset's metadata; every set of preprocessing options
is its own prepared copy (data/builders.py), so changing an option prepares a new copy.
"""
import dataclasses
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
from flaxforge.data import builders, dataset, fields, records, splits, text

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


class TwentyNewsgroups(builders.ArrayBuilder):
  DESCRIPTION = "20 Newsgroups, bydate split, as token ids"
  HOMEPAGE = "http://qwone.com/~jason/20Newsgroups/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"Download {URL} and put {ARCHIVE} in the manual_dir."

  def features(self):
    return builders.ids_feature(self.builder_config.options["seq_len"]), tfds.features.ClassLabel(names=GROUPS)

  def _split_generators(self, dl_manager):
    options = dict(self.builder_config.options)
    fraction, seed = options.pop("validation_fraction"), options.pop("split_seed")
    archive = fetch_archive(dl_manager)
    train, test = list(documents(archive, "train")), list(documents(archive, "test"))
    parts = splits.hold_out(np.array([y for _, y in train]), validation=fraction, seed=seed, where="20 Newsgroups",
                            size=f"validation_fraction {fraction:g} of {len(train)} training posts")
    encoder = text.fit_encoder((train[i][0] for i in parts["train"]), options)
    self.info.metadata["text_encoder"] = encoder.to_json()
    self.info.metadata["label_names"] = list(GROUPS)
    warning = text.vocabulary_warning(
        encoder, [train[i][0] for i in parts["train"]], [train[i][0] for i in parts.get("validation", ())])
    if warning:
      self.info.metadata["warning"] = warning
    examples = {name: [train[i] for i in idx] for name, idx in parts.items()}
    return {name: self._generate_examples(encoder.encode([body for body, _ in docs]), [y for _, y in docs])
            for name, docs in {**examples, "test": test}.items()}


def options(cfg) -> dict:
  """What shapes the prepared copy: the text options and the validation split's."""
  return {**text.encoder_options(cfg), **dataclasses.asdict(fields.Validation.read(cfg))}


def load(cfg) -> dataset.Dataset:
  """`cfg` is `config.data` (data.fields.Archive, Validation and the text sections): 20 Newsgroups from
  manual_dir (else downloaded), prepared once per set of options in data_dir."""
  opts = options(cfg)
  builder = TwentyNewsgroups(data_dir=dataset.data_dir(cfg),
                             config=builders.builder_config(opts, label=text.copy_label(opts)))
  manual_dir = paths.expand(fields.Archive.read(cfg).manual_dir) or None
  if manual_dir and not builder.is_prepared() and not (epath.Path(manual_dir) / ARCHIVE).exists():
    raise UserError(f"{ARCHIVE} not found in {manual_dir}; download it from {URL} into that folder, or fix "
                    "--config.data.manual_dir")
  return text.from_builder(dataset.prepare(builder, manual_dir))
