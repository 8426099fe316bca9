"""An MLP on your own table (CSV, TSV or JSONL) of numeric and categorical columns:

  python -m flaxforge.launch.train --config=launch/configs/tabular_csv.py --workdir=runs/churn \
      --config.data.path=customers.csv --config.data.label_column=churned

Missing values are imputed (training mean / most frequent value) or their rows dropped; numeric columns are
standardised or min-max scaled; categorical columns one-hot or label encoded. Every statistic is fitted on
the training split and stored as JSON in the run (assets/table_transform.json). For a numeric target add
--config.data.task=regression --config.loss=mse (squared error of the single output; records carry rmse).
"""
from flaxforge.data import fields as data
from flaxforge.launch.configs import base
from flaxforge.models import fields as model
from flaxforge.trainer import fields as trainer


def get_config():
  c = base.get_config(trainer.ClassWeight, data.Table, data.Labels, data.Validation, data.Test, model.MLP)
  c.data.name = "tabular"
  c.data.path = ""
  c.data.label_column = "label"
  c.data.feature_columns = ""  # comma-separated; "" = every column but the label
  c.data.categorical_columns = ""  # comma-separated; "" = the non-numeric columns
  c.data.task = "classification"  # or regression
  c.data.missing = "impute"  # impute (training mean / most frequent value) or drop (the row)
  c.data.normalize = "standardize"  # standardize, minmax ([0, 1]), minmax_symmetric ([-1, 1]), none
  c.data.categorical_encoding = "one_hot"  # or label
  c.data.validation_fraction = 0.1
  c.data.test_fraction = 0.2
  c.data.split_seed = 0
  c.data.batch_size = 16
  c.model.name = "mlp"
  c.model.hidden = (64, 32)
  c.optimizer.learning_rate = 3e-3
  c.train.num_epochs = 40
  c.train.log_every = 50
  c.train.progress_bar = False
  c.checkpoint.best_metric = "loss"  # the best checkpoint by validation loss: defined for both tasks
  c.checkpoint.best_mode = "min"
  return c
