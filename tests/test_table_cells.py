"""Issue 30 S2 and D6: a numeric column with a typo stays numeric (the cell reported by row and treated as
missing); at predict an unparseable or non-finite number is refused for its row (the CLI in one line, exit 2;
the server with a 400 naming the field, `Infinity` in a JSON body included), never filled with the training
mean; and categories training never saw (`paris` when it saw `Paris`) are counted and named."""
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pandas as pd
import pytest
from fastapi import testclient

from flaxforge.core.errors import UserError
from flaxforge.data import tabular
from flaxforge.inference import inputs, predict
from flaxforge.launch.configs import tabular_csv
from flaxforge.serving import server
from flaxforge.trainer import loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = inputs.MODALITIES["table"]


def _table(n=300, seed=0) -> pd.DataFrame:
  """Income decides the label; the city adds nothing but categories."""
  rng = np.random.default_rng(seed)
  income = rng.normal(60, 15, n).round(1)
  return pd.DataFrame({"income": income, "city": rng.choice(["Paris", "Lyon", "Nice"], n),
                       "label": np.where(income > 60, "high", "low")})


def _cfg(tmp_path, name, **overrides):
  return {"path": str(tmp_path / name), "data_dir": str(tmp_path / "tfds"), **overrides}


def test_a_typo_keeps_a_numeric_column_numeric_and_names_its_row(tmp_path, capfd):
  clean = _table()
  clean.to_csv(tmp_path / "clean.csv", index=False)
  typo = clean.astype({"income": object})
  typo.loc[16, "income"] = "7O.2"  # letter O: file row 18 (the header is row 1)
  typo.to_csv(tmp_path / "typo.csv", index=False)
  expected = tabular.load(_cfg(tmp_path, "clean.csv"))
  capfd.readouterr()
  ds = tabular.load(_cfg(tmp_path, "typo.csv"))
  assert ds.info["feature_names"] == expected.info["feature_names"] == [
      "income", "city=Lyon", "city=Nice", "city=Paris"]
  err = capfd.readouterr().err
  assert err.count("warning: typo.csv: column 'income' is numeric but 1 of its 300 cells is not a number (row "
                   "18: '7O.2'); treated as missing (data.missing=impute") == 1, err
  dropped = tabular.load(_cfg(tmp_path, "typo.csv", missing="drop"))
  assert sum(len(s) for s in dropped.splits.values()) == 299
  assert "(data.missing=drop: the row is dropped)" in capfd.readouterr().err


def test_non_finite_training_cells_are_reported_too(tmp_path, capfd):
  table = _table()
  table.loc[3, "income"] = np.inf
  table.to_csv(tmp_path / "inf.csv", index=False)
  ds = tabular.load(_cfg(tmp_path, "inf.csv"))
  assert np.isfinite(ds.assets["table_transform"]["numeric"][0]["fill"])
  assert "(row 5: 'inf')" in capfd.readouterr().err


@pytest.fixture(scope="module")
def stats(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("stats")
  _table().to_csv(tmp / "t.csv", index=False)
  return tabular.load(_cfg(tmp, "t.csv")).assets["table_transform"]


@pytest.mark.parametrize("value, said", [("8O", "'8O', not a number"), ("80,5", "'80,5', not a number"),
                                         (float("inf"), "inf, not a finite number"),
                                         ("1e309", "'1e309', not a finite number"),
                                         (1e300, "1e+300, too large")])
def test_an_unparseable_number_is_refused_for_its_row_not_filled(stats, value, said):
  encode = TABLE.encoder({}, {"table_transform": stats})
  with pytest.raises(UserError, match=f"^input 1: 'income' is {re.escape(said)}"):
    encode([{"income": 61.0, "city": "Paris"}, {"income": value, "city": "Paris"}])
  assert encode([{"income": None, "city": "Paris"}, {"income": "", "city": "Lyon"}]).shape == (2, 4)  # missing


def test_json_nan_and_infinity_are_refused_naming_the_field():
  with pytest.raises(UserError, match=r"^'rows'\[1\]\['income'\] is NaN, which JSON does not allow; send null for a "
                                      r"missing value or a finite number$"):
    TABLE.from_json(json.loads('{"rows": [{"income": 1}, {"income": NaN}]}'), max_inputs=4, max_chars=10)
  with pytest.raises(UserError, match=r"^'rows'\[0\]\['income'\] is Infinity"):
    TABLE.from_json(json.loads('{"rows": [{"income": 1e309}]}'), max_inputs=4, max_chars=10)


def test_the_server_answers_400_naming_the_field_and_counts_unseen_categories(stats):
  assets = {"table_transform": stats, "labels": ["high", "low"]}
  predictor = predict.Predictor(lambda x: np.zeros((len(x), 2), np.float32), {"input_encoding": "table"}, assets)
  with testclient.TestClient(server.make_app(predictor=predictor)) as client:
    for body, field in (('{"rows": [{"income": Infinity, "city": "Paris"}]}', "'rows'[0]['income']"),
                        ('{"rows": [{"income": 1, "city": "Paris"}, {"income": 1e309}]}', "'rows'[1]['income']"),
                        ('{"rows": [{"income": "8O", "city": "Paris"}]}', "'rows'[0]: 'income' is '8O'")):
      answer = client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
      assert answer.status_code == 400 and field in answer.json()["error"]["message"], answer.text
    answer = client.post("/v1/predict", json={"rows": [{"income": 70, "city": "paris"}, {"income": 70, "city": "Paris"},
                                                       {"income": 50, "city": "Berlin"}]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [p.get("unseen") for p in body["predictions"]] == [{"city": "paris"}, None, {"city": "Berlin"}]
    assert body["warnings"] == ["2 of 3 rows hold categories training never saw, each encoded as all zeros: "
                                "'rows'[0] city='paris' (training saw 'Paris'), 'rows'[2] city='Berlin'"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("table_run")
  _table().to_csv(tmp / "t.csv", index=False)
  config = tabular_csv.get_config()
  config.data.update(path=str(tmp / "t.csv"), data_dir=str(tmp / "tfds"))
  config.train.update(num_epochs=1, num_steps=4, eval_every_steps=4)
  loop.train(config, str(tmp / "run"), devices=jax.devices()[:1])
  return tmp / "run"


def _predict(*args):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return subprocess.run([sys.executable, "-m", "flaxforge.launch.predict", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # a whole training and subprocess CLI runs
def test_the_cli_refuses_a_bad_row_in_one_line_and_warns_of_unseen_categories(run, tmp_path):
  rows = tmp_path / "rows.csv"
  rows.write_text("income,city\n61.5,Paris\ninf,Lyon\n")
  out = _predict(f"--workdir={run}", f"--input={rows}")
  assert out.returncode == 2 and out.stdout == "", out.stderr[-3000:]
  assert out.stderr.strip().splitlines() == ["error: rows.csv:2: 'income' is inf, not a finite number; fix the "
                                             "value (an empty cell is filled as in training)"]
  out = _predict(f"--workdir={run}", '{"income": "8O", "city": "Paris"}')
  assert out.returncode == 2 and out.stderr.strip().endswith("error: argument 1: 'income' is '8O', not a number; "
                                                             "fix the value (an empty cell is filled as in training)")
  rows.write_text("income,city\n61.5,paris\n40,Nice\n")
  out = _predict(f"--workdir={run}", f"--input={rows}")
  assert out.returncode == 0 and len(out.stdout.splitlines()) == 2, out.stderr[-3000:]
  assert ("warning: 1 of 2 rows hold categories training never saw, each encoded as all zeros: rows.csv:1 "
          "city='paris' (training saw 'Paris')") in out.stderr
