"""The trainer's config sections (run, feed, optimizer, training, checkpoints, mesh, profiler), declared once
(core/config_fields.py); `sections_of(config)`, every section a config's fields may come from; `validate`
against them; and `declared_value`, one field of whichever section declares it for this config's model and
dataset. JAX-free: `--help` and a bad value are answered before JAX starts."""
import dataclasses

from flaxforge.core import config_fields
from flaxforge.core.config_fields import AXIS, NON_NEGATIVE, POSITIVE, Section, count, field, fraction
from flaxforge.data import fields as data_fields
from flaxforge.models import fields as model_fields


@dataclasses.dataclass(frozen=True)
class Run(Section):
  SECTION, TITLE = "", "run"
  seed: int = field(0, "seed of the initialisation and dropout", range=count(0))
  xla_flags: str = field("", "appended to XLA_FLAGS before JAX starts (train, eval and predict)")
  malloc: str = field("auto", "auto (glibc huge pages), jemalloc or system; FLAXFORGE_MALLOC overrides",
                      choices=("auto", "jemalloc", "system"))
  loss: str = field("cross_entropy", "training loss", choices=("cross_entropy", "mse"))


@dataclasses.dataclass(frozen=True)
class Feed(Section):
  """How the rows are read and batches reach the devices (trainer/run_data.py, trainer/feed.py)."""
  SECTION, TITLE = "data", "data"
  batch_size: int = field(32, "global batch, over all devices and processes", range=count(1))
  eval_batch_size: int = field(256, "global batch for validation and test", range=count(1))
  seed: int = field(0, "seed of the data order", range=count(0))
  in_memory: bool = field(True, "read each split into host memory once; False streams from array_record")
  label_encoding: str = field("index", "labels as class indices or one-hot rows", choices=("index", "one_hot"))
  on_device: str = field("auto", "keep the training split on the devices", choices=("auto", "yes", "no"))
  threads: int = field(-1, "Grain reader threads; -1 = auto", range=count(-1))
  prefetch: int = field(8, "batches Grain prepares ahead", range=count(0))


@dataclasses.dataclass(frozen=True)
class Optimizer(Section):
  SECTION, TITLE = "optimizer", "optimizer"
  name: str = field("adam", "the optimizer", choices=("sgd", "momentum", "adam", "adamw"))
  learning_rate: float = field(1e-3, "peak learning rate", range=POSITIVE)
  schedule: str = field("constant", "learning-rate schedule", choices=("constant", "warmup_cosine", "warmup_linear"))
  warmup_steps: int = field(0, "steps of linear warm-up", range=count(0))
  end_lr_factor: float = field(0.0, "final learning rate / peak, for the decaying schedules",
                               range=fraction(high_open=False))
  momentum: float = field(0.9, "momentum (sgd with momentum)", range=fraction())
  nesterov: bool = field(False, "Nesterov momentum")
  b1: float = field(0.9, "Adam's first-moment decay", range=fraction())
  b2: float = field(0.999, "Adam's second-moment decay", range=fraction())
  eps: float = field(1e-8, "Adam's epsilon", range=POSITIVE)
  mu_dtype: str = field("float32", "dtype of the first moment (Adam's mu, momentum's trace); the rest of the "
                        "optimizer state is float32", choices=("float32", "bfloat16"))
  weight_decay: float = field(0.0, "decoupled weight decay (adamw; not on norms and biases)", range=NON_NEGATIVE)
  grad_clip_norm: float = field(0.0, "clip gradients to this global norm; 0 = off", range=NON_NEGATIVE)


@dataclasses.dataclass(frozen=True)
class Train(Section):
  SECTION, TITLE = "train", "training"
  num_epochs: int = field(10, "passes over the training split (unused when num_steps > 0)", range=count(0))
  num_steps: int = field(0, "> 0 overrides num_epochs", range=count(0))
  time_limit_minutes: float = field(0.0, "> 0: validate, checkpoint and test once this much has passed",
                                    range=NON_NEGATIVE)
  log_every: int = field(50, "steps between train records and progress lines", range=count(1))
  eval_every_steps: int = field(0, "steps between validations; 0 = once per epoch", range=count(0))
  steps_per_call: int = field(1, "steps per jitted call (unrolled), for small models", range=count(1))
  grad_accum_steps: int = field(1, "micro-batches per step (gradient accumulation)", range=count(1))
  label_smoothing: float = field(0.0, "label smoothing of the cross-entropy", range=fraction())
  on_nonfinite: str = field("stop", "a non-finite loss: stop, or skip the update and go on", choices=("stop", "skip"))
  progress_bar: bool = field(True, "show progress on stderr (process 0)")
  init_from: str = field("", "a new run starts from this run's parameters (WORKDIR or WORKDIR/checkpoints/STEP)")


@dataclasses.dataclass(frozen=True)
class ClassWeight(Section):
  """How a classifier's loss weighs its classes (trainer/losses.py class_weights); the classifiers' configs
  compose it, a language model's does not."""
  SECTION, TITLE = "train", "training"
  class_weight: str = field("none", "a classifier's loss per class: none (equal), or balanced (each class's "
                            "rows weigh n / (classes x its rows), as scikit-learn's)", choices=("none", "balanced"))


@dataclasses.dataclass(frozen=True)
class EarlyStopping(Section):
  SECTION, TITLE = "train.early_stopping", "early stopping"
  metric: str = field("", "stop when this validation metric stops improving; '' = off")
  mode: str = field("max", "which way is better", choices=("max", "min"))
  patience: int = field(3, "validations without improvement before stopping", range=count(1))
  min_delta: float = field(0.0, "smallest change that counts as an improvement", range=NON_NEGATIVE)


@dataclasses.dataclass(frozen=True)
class Checkpoint(Section):
  SECTION, TITLE = "checkpoint", "checkpoints"
  every_steps: int = field(0, "steps between checkpoints; 0 = at every validation", range=count(0))
  keep: int = field(3, "newest checkpoints kept", range=count(1))
  best_metric: str = field("accuracy", "validation metric of the best checkpoint; '' = none")
  best_mode: str = field("max", "which way is better", choices=("max", "min"))
  keep_best: int = field(1, "best checkpoints kept besides the newest", range=count(0))
  async_save: bool = field(True, "write checkpoints in the background")


@dataclasses.dataclass(frozen=True)
class Mesh(Section):
  SECTION, TITLE = "mesh", "device mesh (data x fsdp x tensor)"
  data: int = field(-1, "data-parallel devices; -1 = what the other axes leave", range=AXIS)
  fsdp: int = field(1, "devices sharding parameters (FSDP); -1 = what the others leave", range=AXIS)
  tensor: int = field(1, "devices splitting hidden units and heads; -1 = what the others leave", range=AXIS)
  rules: tuple = field((), "extra (logical axis name, mesh axis or None) pairs for a model's own axis names")


@dataclasses.dataclass(frozen=True)
class Profile(Section):
  SECTION, TITLE = "profile", "profiler"
  start_step: int = field(-1, "first step of a profiler trace; -1 = off", range=count(-1))
  num_steps: int = field(5, "steps traced", range=count(1))


@dataclasses.dataclass(frozen=True)
class Preference(Section):
  """Preference tuning on {"prompt", "chosen", "rejected"} rows (trainer/preference.py)."""
  SECTION, TITLE = "preference", "preference tuning (DPO and relatives)"
  objective: str = field("dpo", "dpo (Rafailov et al. 2023), ipo, simpo or orpo (no reference model)",
                         choices=("dpo", "ipo", "simpo", "orpo"))
  beta: float = field(0.1, "beta: the reward scale (DPO: how far the policy may move from the reference; "
                      "ORPO: lambda)", range=POSITIVE)
  simpo_gamma: float = field(0.5, "SimPO's target reward margin gamma", range=NON_NEGATIVE)


RUN = (Run, Feed, Optimizer, Train, EarlyStopping, Checkpoint, Mesh, Profile)
OPTIONAL = (ClassWeight, Preference)  # trainer sections a config composes when they apply to it


def sections_of(config) -> tuple:
  """Every section `config`'s fields may come from: the trainer's, its model's and its dataset's (by name),
  and another built-in section for a field none of those declares (finetune_text's `data.manual_dir`, used
  once `data.name` is 20newsgroups; a classifier's `train.class_weight`). What `validate` checks against and
  `--help` describes."""
  model = config["model"]["name"] if "model" in config else ""
  data = config["data"]["name"] if "data" in config else ""
  chosen = RUN + model_fields.candidates(model) + data_fields.candidates(data)
  declared = set(config_fields.declarations(chosen))
  for section in OPTIONAL + model_fields.SECTIONS + data_fields.SECTIONS:
    names = set(config_fields.declarations([section]))
    if section not in chosen and names & set(config_fields.flatten(config)) - declared and not names & declared:
      chosen += (section,)
      declared |= names
  return chosen


def validate(config):
  """UserError naming the first field of `config` its declaration does not allow (core/config_fields.py)."""
  config_fields.validate(config, sections_of(config))


def declared_value(config, name: str):
  """`config`'s value of the field `name` ("data.seq_len"), or its declared default where the config lacks it
  (an older run's config.json); None when no section of this config's model and dataset declares the field
  (a dataset without sequences, an import-path model)."""
  place, _, field_name = name.rpartition(".")
  for section in sections_of(config):
    if section.SECTION == place and field_name in section.declared():
      return getattr(section.of(config), field_name)
  return None
