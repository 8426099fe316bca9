"""Every field each run has, with its default; model configs start from this and override or add fields.

Each field's description and allowed range: core/config_fields.py (what `flaxforge train --help` prints).
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.xla_flags = ""
  c.malloc = "auto"
  c.loss = "cross_entropy"

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"
  c.data.data_dir = ""
  c.data.manual_dir = ""
  c.data.batch_size = 32
  c.data.eval_batch_size = 256
  c.data.seed = 0
  c.data.in_memory = True
  c.data.label_encoding = "index"
  c.data.on_device = "auto"
  c.data.threads = -1
  c.data.prefetch = 8

  c.model = ml_collections.ConfigDict()
  c.model.name = "mlp"

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = "constant"
  c.optimizer.warmup_steps = 0
  c.optimizer.end_lr_factor = 0.0
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.0
  c.optimizer.grad_clip_norm = 0.0

  c.train = ml_collections.ConfigDict()
  c.train.num_epochs = 10
  c.train.num_steps = 0
  c.train.time_limit_minutes = 0.0
  c.train.log_every = 50
  c.train.eval_every_steps = 0
  c.train.steps_per_call = 1
  c.train.grad_accum_steps = 1
  c.train.label_smoothing = 0.0
  c.train.on_nonfinite = "stop"
  c.train.progress_bar = True
  c.train.init_from = ""
  c.train.early_stopping = ml_collections.ConfigDict()
  c.train.early_stopping.metric = ""
  c.train.early_stopping.mode = "max"
  c.train.early_stopping.patience = 3
  c.train.early_stopping.min_delta = 0.0

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 0
  c.checkpoint.keep = 3
  c.checkpoint.best_metric = "accuracy"
  c.checkpoint.best_mode = "max"
  c.checkpoint.keep_best = 1
  c.checkpoint.async_save = True

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  c.mesh.rules = ()  # extra (logical axis name, mesh axes or None) pairs for a model's own axis names

  c.profile = ml_collections.ConfigDict()
  c.profile.start_step = -1
  c.profile.num_steps = 5
  return c
