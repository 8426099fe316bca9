"""The project's config: flaxforge's tabular_csv config on penguins.csv, predicting `species` from the
other columns (numeric and categorical, some missing). Missing values are imputed from the training rows,
numeric columns standardised, `island` and `sex` one-hot encoded; the fitted statistics are stored with
the run as JSON, so `flaxforge predict` applies exactly what training applied."""
import os

from flaxforge.launch.configs import tabular_csv


def get_config():
  c = tabular_csv.get_config()
  c.data.path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "penguins.csv")
  c.data.label_column = "species"
  c.data.feature_columns = "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex"  # not year
  c.train.early_stopping.metric = "accuracy"
  c.train.early_stopping.patience = 8
  return c
