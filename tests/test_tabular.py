"""Tables: numeric and categorical columns with missing values, every statistic fitted on the training rows
and stored as JSON that alone reproduces the training inputs; a Palmer penguins run that learns."""
import json
import os

import jax
import numpy as np
import pandas as pd
import pytest
from sklearn import compose, impute, pipeline, preprocessing

from flaxforge.core.errors import UserError
from flaxforge import serving
from flaxforge.data import tabular
from flaxforge.launch.configs import tabular_csv
from flaxforge.inference import predict
from flaxforge.trainer import loop, losses
from conftest import run_module

NUMERIC, CATEGORICAL = ["age", "income", "visits"], ["plan", "region", "device"]


def synthetic_table(path, n=400, missing=0.1):
  """A churn-like table: 3 numeric and 3 categorical columns (one of them integer-coded), 10% of the
  feature cells missing, a label that depends on both kinds."""
  rng = np.random.default_rng(0)
  table = pd.DataFrame({
      "age": rng.normal(40, 12, n).round(1), "income": rng.lognormal(10, 0.5, n).round(0),
      "visits": rng.poisson(3, n).astype(float),
      "plan": rng.choice(["basic", "plus", "pro"], n), "region": rng.choice(["north", "south", "east", "west"], n),
      "device": rng.choice([1, 2], n)})
  score = (table["age"] - 40) / 12 + (table["plan"] == "basic") * 1.5 - (table["visits"] - 3) / 2
  table["churned"] = np.where(score + rng.normal(0, 0.3, n) > 0.5, "yes", "no")
  for column in NUMERIC + CATEGORICAL:
    table.loc[rng.random(n) < missing, column] = np.nan
  table.to_csv(path, index=False)
  return table


def cfg(tmp_path, **overrides):
  return {"path": str(tmp_path / "customers.csv"), "data_dir": str(tmp_path / "tfds"), "label_column": "churned",
          "categorical_columns": "device", **overrides}


def stored(ds, split):
  src = ds.splits[split]
  rows = [src[i] for i in range(len(src))]
  return np.stack([r["inputs"] for r in rows]), np.array([r["label"] for r in rows])


def test_json_statistics_alone_reproduce_the_training_inputs(tmp_path):
  raw = synthetic_table(tmp_path / "customers.csv")
  ds = tabular.load(cfg(tmp_path))
  stats = json.loads(json.dumps(ds.assets["table_transform"]))  # as predict will read it: JSON only
  assert [s["column"] for s in stats["numeric"]] == NUMERIC and [s["column"] for s in stats["categorical"]] == CATEGORICAL
  assert ds.info["input_shape"] == [3 + 3 + 4 + 2] and ds.info["label_names"] == ["no", "yes"]
  # Which raw rows went to train: the stored rows are in TFDS' order, so match them through the transform.
  _, _, parts, _ = tabular.prepare_rows(tabular.options(cfg(tmp_path)))
  train_raw = raw.iloc[parts["train"]]
  inputs, labels = stored(ds, "train")
  train_raw.drop(columns="churned").to_csv(tmp_path / "rows.csv", index=False)  # new rows, as predict reads them
  recomputed = tabular.transform(stats, tabular.read(tmp_path / "rows.csv"))
  key = lambda a: np.lexsort(a.T[::-1])
  np.testing.assert_array_equal(inputs[key(inputs)], recomputed[key(recomputed)])  # bit for bit
  # The statistics are the training split's own (fitted there, not on all rows): scikit-learn agrees.
  reference = compose.ColumnTransformer([
      ("num", pipeline.make_pipeline(impute.SimpleImputer(strategy="mean"), preprocessing.StandardScaler()), NUMERIC),
      ("cat", pipeline.make_pipeline(impute.SimpleImputer(strategy="most_frequent"),
                                     preprocessing.OneHotEncoder(handle_unknown="ignore")), CATEGORICAL)],
      sparse_threshold=0).fit(train_raw[NUMERIC + CATEGORICAL].astype({"device": str}))
  test_raw = raw.iloc[parts["test"]]
  np.testing.assert_allclose(tabular.transform(stats, test_raw),
                             reference.transform(test_raw[NUMERIC + CATEGORICAL].astype({"device": str})
                                                 .replace("nan", np.nan)), atol=1e-5)
  assert abs(stats["numeric"][0]["fill"] - train_raw["age"].mean()) < 1e-9 != abs(raw["age"].mean() - train_raw["age"].mean())


def test_drop_minmax_and_label_encoding(tmp_path):
  raw = synthetic_table(tmp_path / "customers.csv")
  ds = tabular.load(cfg(tmp_path, missing="drop", normalize="minmax_symmetric", categorical_encoding="label"))
  assert sum(len(s) for s in ds.splits.values()) == len(raw.dropna())
  inputs, _ = stored(ds, "train")
  assert inputs.shape[1] == 6 and inputs[:, :3].min() == -1 and inputs[:, :3].max() == 1  # fitted on train
  assert set(np.unique(inputs[:, 4])) == {0, 1, 2, 3}  # region's index
  unseen = tabular.transform(ds.assets["table_transform"], pd.DataFrame(
      {"age": [40], "income": [""], "visits": [3], "plan": ["gold"], "region": ["north"], "device": [2]}))
  assert unseen[0, 3] == -1 and np.isfinite(unseen).all()  # an unseen category; a missing number is filled


def test_bad_columns_and_options_are_one_line(tmp_path):
  synthetic_table(tmp_path / "customers.csv", n=60)
  with pytest.raises(UserError, match=r"column 'churn' not found .*--config.data.label_column"):
    tabular.load(cfg(tmp_path, label_column="churn"))
  with pytest.raises(UserError, match=r"--config.data.normalize"):
    tabular.load(cfg(tmp_path, normalize="zscore"))
  with pytest.raises(UserError, match=r"column 'income' of the training table is missing"):
    tabular.transform(tabular.load(cfg(tmp_path)).assets["table_transform"], pd.DataFrame({"age": [1.0]}))


@pytest.mark.slow  # subprocess CLI runs
def test_a_table_is_prepared_once_per_content_without_tfds_download_messages(tmp_path):
  """As a user runs it: one plain 'preparing' line, not TFDS' "Downloading ... Unknown size"; a touched file
  reuses its prepared copy and an edited one replaces it (copies do not pile up)."""
  path = tmp_path / "customers.csv"
  synthetic_table(path, n=120)
  out = run_module("flaxforge.launch.train", "--config=tabular_csv", f"--workdir={tmp_path / 'run'}",
                   f"--config.data.path={path}", "--config.data.label_column=churned",
                   f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.train.num_steps=2")
  assert "Downloading" not in out.stdout + out.stderr and "Subsequent calls" not in out.stdout
  assert f"preparing table in {tmp_path / 'tfds' / 'table'}" in out.stderr
  copies = lambda: sorted(p.name for p in (tmp_path / "tfds2" / "table").iterdir())
  tabular.load(cfg(tmp_path, data_dir=str(tmp_path / "tfds2")))
  first = copies()
  stat = os.stat(path)
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same content
  tabular.load(cfg(tmp_path, data_dir=str(tmp_path / "tfds2")))
  assert copies() == first
  synthetic_table(path, n=130)  # edited: a new copy, and the old one is gone
  tabular.load(cfg(tmp_path, data_dir=str(tmp_path / "tfds2")))
  assert len(copies()) == 1 and copies() != first


def _train(tmp_path, path, label, **data):
  config = tabular_csv.get_config()
  config.data.update(path=str(path), label_column=label, data_dir=str(tmp_path / "tfds"), **data)
  config.train.eval_every_steps = 300  # fewer validations and checkpoints than once per (short) epoch
  return loop.train(config, str(tmp_path / "run"), devices=jax.devices()[:1])


@pytest.mark.slow  # a subprocess CLI run
def test_trains_on_the_synthetic_table_and_predicts_from_raw_rows(tmp_path):
  table = synthetic_table(tmp_path / "customers.csv")
  results = _train(tmp_path, tmp_path / "customers.csv", "churned", categorical_columns="device")
  assert results["accuracy"] >= 0.85  # the majority class is ~0.6; the score is mostly learnable

  # Raw rows (JSON-like dicts, missing cells as None) through the run's stored statistics alone.
  predictor = predict.Predictor.from_workdir(str(tmp_path / "run"))
  rows = [{k: (None if pd.isna(v) else v) for k, v in row.items() if k != "churned"}
          for row in table.to_dict(orient="records")]
  statistics = json.loads((tmp_path / "run" / "assets" / "table_transform.json").read_text())
  np.testing.assert_array_equal(predictor.encode(rows), tabular.transform(statistics, table))
  predicted = predictor.predict(rows)
  assert np.mean(np.array(predicted) == table["churned"].to_numpy()) >= 0.85
  # The command reads the same rows from a file (the label column, if present, is ignored).
  out = run_module("flaxforge.launch.predict", f"--workdir={tmp_path / 'run'}",
                   f"--input={tmp_path / 'customers.csv'}", "--json")
  lines = [json.loads(line) for line in out.stdout.splitlines()]
  assert [l["top"][0]["label"] for l in lines] == predicted and lines[0]["input"] == "customers.csv:1"
  # An exported artifact carries the statistics too.
  serving.export(str(tmp_path / "run"), str(tmp_path / "exported"))
  np.testing.assert_allclose(serving.load(str(tmp_path / "exported")).probabilities(rows[:50]),
                             predictor.probabilities(rows[:50]), atol=1e-6)


@pytest.mark.slow  # a whole training
def test_palmer_penguins_species(tmp_path):
  palmerpenguins = pytest.importorskip("palmerpenguins")  # in the test extra
  palmerpenguins.load_penguins().to_csv(tmp_path / "penguins.csv", index=False)
  results = _train(tmp_path, tmp_path / "penguins.csv", "species")
  assert results["accuracy"] >= 0.97, results


@pytest.mark.slow  # a whole training
def test_regression_of_a_numeric_column(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(300, 2))
  table = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "kind": rng.choice(["p", "q"], 300)})
  table["y"] = 3 * table["a"] - table["b"] + (table["kind"] == "q") * 2
  table.to_csv(tmp_path / "y.csv", index=False)
  ds = tabular.load({"path": str(tmp_path / "y.csv"), "data_dir": str(tmp_path / "tfds"), "label_column": "y",
                     "task": "regression"})
  assert ds.info["task"] == "regression" and ds.info["num_classes"] == 1 and "labels" not in ds.assets
  config = tabular_csv.get_config()
  config.data.update(path=str(tmp_path / "y.csv"), label_column="y", task="regression", data_dir=str(tmp_path / "tfds"))
  config.loss = "mse"
  config.train.update(num_epochs=10, eval_every_steps=200)
  results = loop.train(config, str(tmp_path / "run"), devices=jax.devices()[:1])
  assert "accuracy" not in results and results["rmse"] < 0.5  # the target's own spread is ~3.4
  values = predict.Predictor.from_workdir(str(tmp_path / "run")).predict(table.drop(columns="y").to_dict("records"))
  assert np.sqrt(np.mean((np.array(values) - table["y"].to_numpy()) ** 2)) < 0.5
  with pytest.raises(UserError, match=r"regression target .*--config.loss=mse"):
    losses.per_example("cross_entropy", np.zeros((4, 1), np.float32), np.zeros(4, np.float32))
