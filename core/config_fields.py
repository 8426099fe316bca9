"""Every config field's one-line description and allowed range, declared once: `--help` prints them and
`validate` checks a config against them (command line and Python alike).

The defaults live in launch/configs/base.py (fields every run has) and in each model's config (the rest);
a range applies to numbers only (`model.pool` is a window size for the text CNN and "cls" for BERT) and to
each element of a tuple (`model.hidden`).
"""
import dataclasses
import math

from flaxforge.core.errors import UserError


@dataclasses.dataclass(frozen=True)
class Range:
  """low <= value <= high (or strictly, with the open flags); `also` lists special values outside it."""
  low: float = -math.inf
  high: float = math.inf
  low_open: bool = False
  high_open: bool = False
  integer: bool = False
  also: tuple = ()

  def allows(self, value) -> bool:
    if value in self.also:
      return True
    if self.integer and (isinstance(value, float) and not value.is_integer()):
      return False
    above = value > self.low if self.low_open else value >= self.low
    below = value < self.high if self.high_open else value <= self.high
    return above and below

  def __str__(self):
    kind = "integer" if self.integer else "number"
    parts = []
    if self.low > -math.inf:
      parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
    if self.high < math.inf:
      parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
    also = f" or {', '.join(map(str, self.also))}" if self.also else ""
    return f"{kind} {' and '.join(parts)}{also}".strip()


def count(low=0, also=()):
  return Range(low=low, integer=True, also=also)


def fraction(high_open=True):
  return Range(0, 1, high_open=high_open)


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
AXIS = count(1, also=(-1,))

SECTIONS = {"": "run", "data": "data", "model": "model", "optimizer": "optimizer", "train": "training",
            "train.early_stopping": "early stopping", "checkpoint": "checkpoints",
            "mesh": "device mesh (data x fsdp x tensor)", "profile": "profiler"}

# field: (one-line description, range or None)
FIELDS = {
    "seed": ("seed of the initialisation and dropout", count(0)),
    "xla_flags": ("appended to XLA_FLAGS before JAX starts (train, eval and predict)", None),
    "malloc": ("auto (glibc huge pages), jemalloc or system; FLAXFORGE_MALLOC overrides", None),
    "loss": ("cross_entropy or mse", None),

    "data.name": ("dataset: digits, 20newsgroups, text_file, lm_text, fashion_mnist, image_folder, tabular, "
                  "synthetic, or your module (my_data.loader, path/to/loader.py)", None),
    "data.data_dir": ("where prepared datasets live; '' = $TFDS_DATA_DIR or ~/tensorflow_datasets", None),
    "data.manual_dir": ("folder holding a downloaded archive (offline)", None),
    "data.batch_size": ("global batch, over all devices and processes", count(1)),
    "data.eval_batch_size": ("global batch for validation and test", count(1)),
    "data.seed": ("seed of the data order", count(0)),
    "data.in_memory": ("read each split into host memory once; False streams from array_record", None),
    "data.label_encoding": ("index or one_hot", None),
    "data.on_device": ("keep the training split on the devices: auto, yes, no", None),
    "data.threads": ("Grain reader threads; -1 = auto", count(-1)),
    "data.prefetch": ("batches Grain prepares ahead", count(0)),
    "data.path": ("your CSV/TSV/JSONL (text classification) or .txt/.jsonl corpus; '' = 20 Newsgroups", None),
    "data.text_column": ("column (or JSON field) holding the text", None),
    "data.label_column": ("column holding the label", None),
    "data.split_column": ("column with train/validation/test; '' = hold splits out", None),
    "data.image_size": ("images are resized to (height, width) pixels", count(1)),
    "data.color": ("rgb or grey", None),
    "data.normalize": ("images: unit, symmetric or standardize; tables: standardize, minmax, minmax_symmetric "
                       "or none", None),
    "data.random_crop_padding": ("training images: random crops after padding by this many pixels; 0 = off",
                                 count(0)),
    "data.random_flip": ("training images: random horizontal flips", None),
    "data.feature_columns": ("comma-separated input columns; '' = every column but the label", None),
    "data.categorical_columns": ("comma-separated categorical columns; '' = the non-numeric ones", None),
    "data.categorical_encoding": ("one_hot or label", None),
    "data.missing": ("a missing value: impute (training mean or most frequent value) or drop the row", None),
    "data.task": ("classification or regression", None),
    "data.bad_rows": ("a row with a missing text or label: error, or drop and count it", None),
    "data.num_words": ("vocabulary size: the top-N training words", count(2)),
    "data.seq_len": ("tokens per example (padded or truncated)", count(1)),
    "data.padding": ("pad at the start (pre) or end (post)", None),
    "data.truncating": ("truncate at the start (pre) or end (post)", None),
    "data.lowercase": ("lower-case texts before splitting", None),
    "data.filters": ("characters turned into spaces before splitting", None),
    "data.remove": ("strip headers, footers, quotes (comma-separated)", None),
    "data.oov": ("unknown words map to id 1 instead of being dropped", None),
    "data.cls_token": ("a [CLS] id at position 0", None),
    "data.tokenizer": ("word, char, or hf (the pretrained model's tokenizer.json)", None),
    "data.char_ngrams": ("char tokenizer: also 2..N-grams", count(1)),
    "data.tokenizer_path": ("tokenizer=hf: a tokenizer.json or the folder holding it; '' = model.pretrained", None),
    "data.bigrams": ("add word pairs as tokens", None),
    "data.validation_fraction": ("share of the training set held out for validation; 0 = no validation "
                                 "split (train on every training row)", fraction()),
    "data.test_fraction": ("share held out for test (files without a split column)",
                           Range(0, 1, low_open=True, high_open=True)),
    "data.split_seed": ("seed of the hold-out split", count(0)),
    "data.test_bytes": ("bytes of the test split to evaluate; 0 = all", count(0)),
    "data.separator": ("byte id between documents", Range(0, 255, integer=True)),

    "model.name": ("mlp, text_cnn, bag_of_words, bert, gpt, convnet, or your module (my_models.net, "
                   "path/to/net.py)", None),
    "model.hidden": ("hidden layer widths (mlp) or one hidden width, 0 = none (bag_of_words)", count(0)),
    "model.activation": ("relu, sigmoid, tanh, gelu", None),
    "model.kernel_init": ("normal, uniform, lecun_*, xavier_*, he_*", None),
    "model.bias_init": ("zeros, normal or uniform", None),
    "model.init_std": ("standard deviation of the normal initialiser", POSITIVE),
    "model.init_limit": ("limit of the uniform initialiser", POSITIVE),
    "model.dropout": ("dropout rate", fraction()),
    "model.channels": ("ConvNet: channels of each stage (each stage halves the image)", count(1)),
    "model.convs_per_stage": ("ConvNet: 3x3 convolutions per stage", count(1)),
    "model.embed_dim": ("embedding width; 0 = the size preset's (transformers)", count(0)),
    "model.conv1_filters": ("first convolution's filters", count(1)),
    "model.conv1_kernel": ("first convolution's width", count(1)),
    "model.pool": ("max-pool window (text_cnn); cls or mean (bert)", count(1)),
    "model.conv2_filters": ("second convolution's filters", count(1)),
    "model.conv2_kernel": ("second convolution's width", count(1)),
    "model.dense": ("hidden dense width", count(1)),
    "model.size": ("size preset: tiny, small, 125m, 350m, 1b", None),
    "model.num_layers": ("transformer blocks; 0 = the preset's", count(0)),
    "model.num_heads": ("attention heads; 0 = the preset's", count(0)),
    "model.mlp_dim": ("MLP width in each block; 0 = the preset's", count(0)),
    "model.dtype": ("compute dtype: float32, or bfloat16 on TPU/GPU", None),
    "model.position": ("rope or learned positions", None),
    "model.norm": ("layer or rms norm", None),
    "model.tie_embeddings": ("output layer shares the token embedding", None),
    "model.pretrained": ("a Hugging Face model folder: its architecture and weights; '' = random init", None),
    "model.lora.rank": ("LoRA adapters' rank; 0 = train every weight", count(0)),
    "model.lora.alpha": ("LoRA scale alpha / rank", POSITIVE),
    "model.lora.targets": ("comma-separated module names that get adapters (e.g. qkv,out)", None),

    "optimizer.name": ("sgd, momentum, adam, adamw", None),
    "optimizer.learning_rate": ("peak learning rate", POSITIVE),
    "optimizer.schedule": ("constant, warmup_cosine, warmup_linear", None),
    "optimizer.warmup_steps": ("steps of linear warm-up", count(0)),
    "optimizer.end_lr_factor": ("final learning rate / peak, for the decaying schedules", fraction(False)),
    "optimizer.momentum": ("momentum (sgd with momentum)", fraction()),
    "optimizer.nesterov": ("Nesterov momentum", None),
    "optimizer.b1": ("Adam's first-moment decay", fraction()),
    "optimizer.b2": ("Adam's second-moment decay", fraction()),
    "optimizer.eps": ("Adam's epsilon", POSITIVE),
    "optimizer.weight_decay": ("decoupled weight decay (adamw; not on norms and biases)", NON_NEGATIVE),
    "optimizer.grad_clip_norm": ("clip gradients to this global norm; 0 = off", NON_NEGATIVE),

    "train.num_epochs": ("passes over the training split (unused when num_steps > 0)", count(0)),
    "train.num_steps": ("> 0 overrides num_epochs", count(0)),
    "train.time_limit_minutes": ("> 0: validate, checkpoint and test once this much has passed", NON_NEGATIVE),
    "train.log_every": ("steps between train records and progress lines", count(1)),
    "train.eval_every_steps": ("steps between validations; 0 = once per epoch", count(0)),
    "train.steps_per_call": ("steps per jitted call (unrolled), for small models", count(1)),
    "train.grad_accum_steps": ("micro-batches per step (gradient accumulation)", count(1)),
    "train.label_smoothing": ("label smoothing of the cross-entropy", fraction()),
    "train.on_nonfinite": ("stop, or skip the update and go on", None),
    "train.progress_bar": ("show progress on stderr (process 0)", None),
    "train.init_from": ("a new run starts from this run's parameters (WORKDIR or WORKDIR/checkpoints/STEP)", None),
    "train.early_stopping.metric": ("stop when this validation metric stops improving; '' = off", None),
    "train.early_stopping.mode": ("max or min: which way is better", None),
    "train.early_stopping.patience": ("validations without improvement before stopping", count(1)),
    "train.early_stopping.min_delta": ("smallest change that counts as an improvement", NON_NEGATIVE),

    "checkpoint.every_steps": ("steps between checkpoints; 0 = at every validation", count(0)),
    "checkpoint.keep": ("newest checkpoints kept", count(1)),
    "checkpoint.best_metric": ("validation metric of the best checkpoint; '' = none", None),
    "checkpoint.best_mode": ("max or min", None),
    "checkpoint.keep_best": ("best checkpoints kept besides the newest", count(0)),
    "checkpoint.async_save": ("write checkpoints in the background", None),

    "mesh.data": ("data-parallel devices; -1 = what the other axes leave", AXIS),
    "mesh.fsdp": ("devices sharding parameters (FSDP); -1 = what the others leave", AXIS),
    "mesh.tensor": ("devices splitting hidden units and heads; -1 = what the others leave", AXIS),
    "mesh.rules": ("extra (logical axis name, mesh axis or None) pairs for a model's own axis names", None),

    "profile.start_step": ("first step of a profiler trace; -1 = off", count(-1)),
    "profile.num_steps": ("steps traced", count(1)),
}


def flatten(config, prefix: str = "") -> dict:
  """{"data.batch_size": 32, ...} of a ConfigDict (or nested dicts)."""
  out = {}
  for key, value in config.items():
    if hasattr(value, "items"):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def by_section(config) -> dict:
  """{section title: [(field, value, description, range)]}, sections and fields in declaration order."""
  order = {name: i for i, name in enumerate(FIELDS)}
  sections = {title: [] for title in SECTIONS.values()}
  for name, value in sorted(flatten(config).items(), key=lambda kv: order.get(kv[0], len(order))):
    section = name.rpartition(".")[0]
    description, allowed = FIELDS.get(name, ("", None))
    sections.setdefault(SECTIONS.get(section, section), []).append((name, value, description, allowed))
  return {title: fields for title, fields in sections.items() if fields}


def _numbers(value):
  if isinstance(value, bool) or value is None:
    return []
  if isinstance(value, (int, float)):
    return [value]
  if isinstance(value, (tuple, list)):
    return [v for item in value for v in _numbers(item)]
  return []


def validate(config):
  """Raises UserError naming the first numeric field outside its declared range, its value and the range."""
  for name, value in flatten(config).items():
    allowed = FIELDS.get(name, (None, None))[1]
    if allowed is None:
      continue
    for number in _numbers(value):
      if not allowed.allows(number) or (isinstance(number, float) and math.isnan(number)):
        raise UserError(f"config.{name} = {value!r} is out of range: allowed is {allowed}; "
                        f"set --config.{name} to such a value")
