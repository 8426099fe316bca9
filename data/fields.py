"""Every built-in dataset's config sections (core/config_fields.py), declared once, and which of them a
dataset name may use (`candidates`). JAX-free: `--help` and a bad value are answered before JAX starts."""
import dataclasses

from flaxforge.core.config_fields import Range, Section, count, field, fraction

_TITLE = "data"


@dataclasses.dataclass(frozen=True)
class Dataset(Section):
  SECTION, TITLE = "data", _TITLE
  name: str = field("digits", "dataset: digits, 20newsgroups, text_file, lm_text, fashion_mnist, image_folder, "
                    "tabular, synthetic, or your module (my_data.loader, path/to/loader.py)")
  data_dir: str = field("", "where prepared datasets live; '' = $TFDS_DATA_DIR or ~/tensorflow_datasets")


@dataclasses.dataclass(frozen=True)
class Archive(Section):
  """A downloadable dataset (20 Newsgroups, also lm_text's default corpus; Fashion-MNIST) read offline from a
  folder."""
  SECTION, TITLE = "data", _TITLE
  manual_dir: str = field("", "folder holding the downloaded archive (offline)")


@dataclasses.dataclass(frozen=True)
class Validation(Section):
  """The validation split held out of the training rows (data/splits.py)."""
  SECTION, TITLE = "data", _TITLE
  validation_fraction: float = field(0.1, "share of the training set held out for validation; 0 = no "
                                     "validation split (train on every training row)", range=fraction())
  split_seed: int = field(0, "seed of the hold-out split", range=count(0))


@dataclasses.dataclass(frozen=True)
class Test(Section):
  """The test split held out of a user's file or folder that has no test split of its own (data/splits.py)."""
  SECTION, TITLE = "data", _TITLE
  test_fraction: float = field(0.1, "share held out for test (a file or folder without its own test split)",
                               range=Range(0, 1, low_open=True, high_open=True))


@dataclasses.dataclass(frozen=True)
class TextFile(Section):
  """A user's labelled CSV/TSV/JSONL texts (data/text_files.py)."""
  SECTION, TITLE = "data", _TITLE
  path: str = field("", "your CSV/TSV/JSONL; '' = none")
  text_column: str = field("text", "column (or JSON field) holding the text")
  label_column: str = field("label", "column holding the label")
  split_column: str = field("", "column with train/validation/test; '' = hold splits out")
  bad_rows: str = field("error", "a row with a missing text or label: error, or drop and count it",
                        choices=("error", "drop"))


@dataclasses.dataclass(frozen=True)
class Labels(Section):
  """Class names read from a user's file or table (data/splits.py label_name)."""
  SECTION, TITLE = "data", _TITLE
  label_case: str = field("keep", "labels as written (keep: 'Billing' and 'billing' are two classes), or "
                          "lower-cased (lower: one class); surrounding spaces never count", choices=("keep", "lower"))


@dataclasses.dataclass(frozen=True)
class Tokenizer(Section):
  """Texts to token ids (data/text.py)."""
  SECTION, TITLE = "data", _TITLE
  tokenizer: str = field("word", "word or char (a vocabulary fitted on the training texts), or hf (the "
                         "pretrained model's tokenizer.json)", choices=("word", "char", "hf"))
  seq_len: int = field(100, "tokens per example (padded or truncated)", range=count(1))
  remove: str = field("", "strip headers, footers, quotes (comma-separated)")


@dataclasses.dataclass(frozen=True)
class Vocabulary(Section):
  """A word or character vocabulary fitted on the training texts (data/text.py TextEncoder)."""
  SECTION, TITLE = "data", _TITLE
  num_words: int = field(10000, "vocabulary size: the top-N training words", range=count(2))
  lowercase: bool = field(True, "lower-case texts before splitting")
  filters: str = field('!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n', "characters turned into spaces before splitting")
  oov: bool = field(False, "unknown words map to id 1 instead of being dropped")
  cls_token: bool = field(False, "a [CLS] id at position 0")
  bigrams: bool = field(False, "add word pairs as tokens")
  char_ngrams: int = field(1, "char tokenizer: also 2..N-grams", range=count(1))
  padding: str = field("pre", "pad at the start (pre) or end (post)", choices=("pre", "post"))
  truncating: str = field("pre", "truncate at the start (pre) or end (post)", choices=("pre", "post"))


@dataclasses.dataclass(frozen=True)
class PretrainedTokenizer(Section):
  """A pretrained model's own tokenizer, for data.tokenizer=hf (data/text.py PretrainedEncoder)."""
  SECTION, TITLE = "data", _TITLE
  tokenizer_path: str = field("", "a tokenizer.json or the folder holding it; '' = model.pretrained's")


@dataclasses.dataclass(frozen=True)
class Corpus(Section):
  """A language model's corpus, cut into windows (data/lm_text.py)."""
  SECTION, TITLE = "data", _TITLE
  path: str = field("", "your .txt or .jsonl corpus ({'text'} rows, or {'prompt', 'completion'} for SFT); "
                    "'' = 20 Newsgroups")
  text_column: str = field("text", "JSON field holding the text")
  tokenizer: str = field("bytes", "bytes, or hf (the pretrained model's tokenizer.json)", choices=("bytes", "hf"))
  seq_len: int = field(256, "tokens per training window", range=count(1))
  test_bytes: int = field(200_000, "tokens (bytes, for a byte corpus) of the test split to evaluate; 0 = all",
                          range=count(0))


@dataclasses.dataclass(frozen=True)
class ByteTokens(Section):
  """A byte-level language model's tokens (data/lm_text.py)."""
  SECTION, TITLE = "data", _TITLE
  separator: int = field(0, "byte id between documents", range=Range(0, 255, integer=True))


@dataclasses.dataclass(frozen=True)
class Chat(Section):
  """Chat rows ({"messages"}) and preference rows ({"prompt", "chosen", "rejected"}) of a language model's
  .jsonl (data/chat_sft.py, data/preference_rows.py)."""
  SECTION, TITLE = "data", _TITLE
  loss_on: str = field("assistant", "chat rows: the loss on the assistant's turns, or on every token",
                       choices=("assistant", "all"))
  bad_rows: str = field("error", "a bad chat or preference row (no role, an empty turn, chosen equal to "
                        "rejected): error, or drop and count it", choices=("error", "drop"))


@dataclasses.dataclass(frozen=True)
class Packing(Section):
  """Several examples per training row (data/packing.py): segment ids keep them apart, positions restart."""
  SECTION, TITLE = "data", _TITLE
  packing: bool = field(False, "pack several examples into each training row of seq_len (SFT and chat rows)")
  packing_window: int = field(1000, "examples planned together (best fit decreasing within each window)",
                              range=count(1))


@dataclasses.dataclass(frozen=True)
class Augment(Section):
  """Image scaling and training-time augmentation (data/image_folder.py image_dataset, data/preprocess.py)."""
  SECTION, TITLE = "data", _TITLE
  normalize: str = field("unit", "pixels to unit [0, 1], symmetric [-1, 1] or standardize",
                         choices=("unit", "symmetric", "standardize"))
  random_crop_padding: int = field(0, "training images: random crops after padding by this many pixels; 0 = off",
                                   range=count(0))
  random_flip: bool = field(False, "training images: random horizontal flips")


@dataclasses.dataclass(frozen=True)
class ImageFolder(Section):
  """A user's images, one subfolder per class (data/image_folder.py)."""
  SECTION, TITLE = "data", _TITLE
  path: str = field("", "your folder of class subfolders")
  image_size: tuple = field((64, 64), "images are resized to (height, width) pixels", range=count(1))
  color: str = field("rgb", "rgb or grey", choices=("rgb", "grey"))
  max_image_pixels: int = field(178_956_970, "largest image (width x height) decoded; bigger ones are refused "
                                "as decompression bombs (the default is Pillow's limit)", range=count(1))


@dataclasses.dataclass(frozen=True)
class ImageProcessor(Section):
  """A pretrained vision model's image processor, for image_folder (data/image_folder.py image_processor)."""
  SECTION, TITLE = "data", _TITLE
  image_processor: str = field("", "a Hugging Face preprocessor_config.json or the model folder holding it: its "
                               "size, mean and std replace image_size, color (rgb) and normalize; '' = none")


@dataclasses.dataclass(frozen=True)
class Table(Section):
  """A user's table (data/tabular.py)."""
  SECTION, TITLE = "data", _TITLE
  path: str = field("", "your CSV/TSV/JSONL table")
  label_column: str = field("label", "column holding the label (or the regression target)")
  feature_columns: str = field("", "comma-separated input columns; '' = every column but the label")
  categorical_columns: str = field("", "comma-separated categorical columns; '' = the non-numeric ones")
  categorical_encoding: str = field("one_hot", "categorical columns as one-hot columns or label ids",
                                    choices=("one_hot", "label"))
  missing: str = field("impute", "a missing value: impute (training mean or most frequent value) or drop the row",
                       choices=("impute", "drop"))
  task: str = field("classification", "classification or regression", choices=("classification", "regression"))
  normalize: str = field("standardize", "numeric columns: standardize, minmax, minmax_symmetric or none",
                         choices=("standardize", "minmax", "minmax_symmetric", "none"))


@dataclasses.dataclass(frozen=True)
class Synthetic(Section):
  """Seeded random data (data/synthetic.py), for benchmarks and smoke tests."""
  SECTION, TITLE = "data.synthetic", "synthetic data"
  kind: str = field("dense", "float32 features (dense) or int32 token ids (tokens)", choices=("dense", "tokens"))
  num_train: int = field(60_000, "training examples", range=count(1))
  num_test: int = field(0, "test examples", range=count(0))
  features: int = field(784, "dense: features per example", range=count(1))
  seq_len: int = field(100, "tokens: ids per example", range=count(1))
  vocab_size: int = field(10_000, "tokens: vocabulary size", range=count(2))
  num_classes: int = field(10, "classes", range=count(2))
  seed: int = field(0, "seed of the arrays", range=count(0))


SECTIONS = (Dataset, Archive, Validation, Test, TextFile, Labels, Tokenizer, Vocabulary, PretrainedTokenizer,
            Corpus, ByteTokens, Chat, Packing, Augment, ImageFolder, ImageProcessor, Table, Synthetic)
_TEXT = (Tokenizer, Vocabulary, PretrainedTokenizer)
_CANDIDATES = {
    "digits": (),
    "20newsgroups": (Archive, Validation) + _TEXT,
    "text_file": (TextFile, Labels, Validation, Test) + _TEXT,
    "lm_text": (Archive, Validation, Test, Corpus, ByteTokens, PretrainedTokenizer, Chat, Packing),
    "fashion_mnist": (Archive, Validation, Augment),
    "image_folder": (ImageFolder, Validation, Test, Augment, ImageProcessor),
    "tabular": (Table, Labels, Validation, Test),
    "synthetic": (Synthetic,),
}


def candidates(name: str) -> tuple:
  """The sections dataset `name`'s fields may come from (an import-path loader: only `Dataset`'s)."""
  return (Dataset,) + _CANDIDATES.get(name, ())
