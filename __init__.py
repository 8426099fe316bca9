"""flaxforge: an accelerator-first JAX/Flax NNX trainer.

The distribution installs this one package; its subpackages are the repository's top-level folders
(pyproject.toml maps them): `flaxforge.launch` (what a user runs), `flaxforge.serving` (export and the HTTP
server), `flaxforge.inference` (what a trained run produces: predictions, text, attributions),
`flaxforge.trainer` (the engine), `flaxforge.models` (the networks), `flaxforge.data` (builders and
pipelines) and `flaxforge.core` (what every layer shares). Layers import only downwards:
launch -> serving -> inference -> trainer -> {data, models} -> core.

The Python API below is what the `flaxforge` command runs, for notebooks and scripts. `import flaxforge`
stays cheap: JAX and the trainer load when a function is first called.

    results = flaxforge.train("tiny", "runs/t")                        # a shipped config, by name
    results = flaxforge.train({"train.num_steps": 100}, "runs/d")      # overrides on the default config
    results = flaxforge.train(config, "runs/m", model=lambda cfg, info, rngs: MyModel(info, rngs=rngs))
    flaxforge.evaluate("runs/t", best=True)                            # {"accuracy": ..., "step": ...}
    flaxforge.Predictor.from_workdir("runs/reviews").predict(["a text to classify"])   # ["label"]
    flaxforge.Predictor.from_workdir("runs/photos").predict("cat.jpg")                 # images: paths or bytes
    flaxforge.Predictor.from_workdir("runs/churn").predict([{"age": 41, "plan": "pro"}])  # table rows
    flaxforge.Explainer.from_workdir("runs/reviews").explain("a text")  # {"label", "tokens": [...], ...}
    flaxforge.plots.training_curves("runs/t")                          # matplotlib figures, inline in Jupyter
    flaxforge.plots.confusion_matrix(flaxforge.evaluate("runs/t")["report"][0])

In a Jupyter notebook the progress bar is one line redrawn in place (a widget with ipywidgets), and a stop
(the kernel's interrupt button) saves a checkpoint, then raises KeyboardInterrupt; `train` on the same
workdir resumes. examples/notebooks/ shows it all.

Mistakes raise `flaxforge.core.errors.UserError`, whose one-line message names the fix. The API is as quiet
as the command: absl's warnings (Orbax's, TFDS') stay off stderr unless the script sets absl's verbosity
itself (`absl.logging.set_verbosity(absl.logging.WARNING)`).
"""
__version__ = "0.1.0"


def train(config, workdir: str, *, model=None) -> dict:
  """Trains a new run in `workdir`, or resumes the one there; returns the test split's metrics.

  config: an `ml_collections.ConfigDict`, a shipped config's name ("tiny", "text_csv", ...) or a config
    file's path, or a dict of overrides on the default config ({"optimizer.learning_rate": 0.01}).
  model: a factory `model(cfg, info, rngs) -> nnx.Module` (cfg: `config.model`; info: the dataset's
    metadata dict, e.g. `num_classes`, `input_shape`, `vocab_size`; rngs: an `nnx.Rngs`) whose
    `__call__(inputs)` returns float32 logits [batch, classes]. The run records it as model.name =
    'module:name', and evaluate and Predictor need the same `model=` again.
  A config's `xla_flags` and `malloc` take effect only through the `flaxforge` command (JAX has started).
  A stop signal (SIGTERM, SIGINT: Ctrl-C, a notebook's interrupt) saves a checkpoint once the first step has
  finished, says so and exits 0 as the command does; in a Jupyter kernel, which SystemExit does not end, it
  raises KeyboardInterrupt instead.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  from flaxforge.trainer import loop, progress  # pylint: disable=g-import-not-at-top
  _quiet()
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # Grain reads absl flags; a script or notebook never parsed them
  try:
    return loop.train(_config(config), workdir, model=model)
  except SystemExit as e:  # the loop's stop: what was trained is saved, and it said so on stdout
    if e.code or not progress.in_notebook():
      raise
    raise KeyboardInterrupt(f"training in {workdir} stopped; flaxforge.train with the same workdir resumes "
                            "it") from None


def evaluate(workdir: str, *, step: int | None = None, best: bool = False, split: str = "test",
             model=None) -> dict:
  """Metrics of a run's checkpoint on `split` (default the latest checkpoint; `best`: the best by the run's
  validation metric): {"split", "step", "loss", "accuracy", ...}, plus for classifiers the "report" files
  written and the "classification_report" (the per-class table as text, to print). `model`: the factory the
  run was trained with, if any."""
  from flaxforge.trainer import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  _quiet()
  return evaluate_lib.evaluate_workdir(workdir, step=step, best=best, split=split, model=model)


def __getattr__(name):
  """What loads on first use: `Predictor` (the one prediction class) and `Explainer` (token attributions)
  with JAX; `plots` (figures of a run: flaxforge.trainer.plots) with matplotlib only."""
  if name == "Predictor":
    from flaxforge.inference.predict import Predictor  # pylint: disable=g-import-not-at-top
    _quiet()
    return Predictor
  if name == "Explainer":
    from flaxforge.inference.explain import Explainer  # pylint: disable=g-import-not-at-top
    _quiet()
    return Explainer
  if name == "plots":
    from flaxforge.trainer import plots  # pylint: disable=g-import-not-at-top
    return plots
  raise AttributeError(f"module 'flaxforge' has no attribute {name!r}")


def _quiet():
  """absl's verbosity at ERROR, as the command sets it, unless the script has set it (the absl logger's level
  is then no longer NOTSET)."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  if logging.get_absl_logger().level == 0:  # logging.NOTSET
    logging.set_verbosity(logging.ERROR)


def _config(config):
  """`config` as a ConfigDict, by the command line's resolver (launch/configs)."""
  from flaxforge.launch import configs  # pylint: disable=g-import-not-at-top
  return configs.load(config)
