"""Every field the trainer reads, with its default. Model configs start from this and override."""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Appended to XLA_FLAGS before JAX starts (train, and eval/predict from the run's config.json).
  c.xla_flags = ""
  # The process's malloc (launch/allocator.py): auto = glibc huge pages | jemalloc (if installed) | system.
  # FLAXFORGE_MALLOC, when set, overrides it.
  c.malloc = "auto"
  c.loss = "cross_entropy"  # or "mse"

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"
  c.data.data_dir = ""  # "" = $TFDS_DATA_DIR or ~/tensorflow_datasets; gs:// works
  c.data.manual_dir = ""
  c.data.batch_size = 32  # global, over all devices and processes
  c.data.eval_batch_size = 256
  c.data.seed = 0  # data order; the split itself is fixed by the dataset
  c.data.in_memory = True  # read each split into host memory once; False streams from array_record
  c.data.label_encoding = "index"  # or "one_hot"
  c.data.on_device = "auto"  # keep the training split on the devices: auto (one process, in memory, < 256 MiB), yes, no
  c.data.threads = -1  # Grain reader threads; -1 = auto: none for in-memory rows, 2 when streaming
  c.data.prefetch = 8

  c.model = ml_collections.ConfigDict()
  c.model.name = "mlp"

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"  # sgd, momentum, adam, adamw
  c.optimizer.learning_rate = 1e-3
  c.optimizer.schedule = "constant"  # constant, warmup_cosine, warmup_linear
  c.optimizer.warmup_steps = 0
  c.optimizer.end_lr_factor = 0.0
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = False
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 0.0
  c.optimizer.grad_clip_norm = 0.0  # 0 = off

  c.train = ml_collections.ConfigDict()
  c.train.num_epochs = 10
  c.train.num_steps = 0  # > 0 overrides num_epochs
  c.train.time_limit_minutes = 0.0  # > 0: end training (validate, checkpoint, test) once this much has passed
  c.train.log_every = 50
  c.train.eval_every_steps = 0  # 0 = once per epoch
  c.train.steps_per_call = 1  # > 1 runs that many steps in one jitted lax.scan
  c.train.grad_accum_steps = 1
  c.train.label_smoothing = 0.0
  c.train.on_nonfinite = "stop"  # or "skip": drop the update, count it, go on
  c.train.progress_bar = True

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 0  # 0 = at every validation
  c.checkpoint.keep = 3
  c.checkpoint.best_metric = "accuracy"  # validation metric for the best checkpoint; "" = none
  c.checkpoint.best_mode = "max"
  c.checkpoint.keep_best = 1
  c.checkpoint.async_save = True

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1 = the devices the other axes leave
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  c.mesh.rules = ()  # extra (logical axis name, mesh axes or None) pairs for a model's own axis names

  c.profile = ml_collections.ConfigDict()
  c.profile.start_step = -1  # >= 0 traces steps [start_step, start_step + num_steps)
  c.profile.num_steps = 5
  return c
