"""Labels as a new user writes them (issue 27, items 1-2; issue 30): a stray label that would split a class is
warned about, `data.label_case=lower` merges case variants on purpose, `train.class_weight=balanced` weights
the loss by scikit-learn's formula, NaN/nan/null/None/empty label cells are missing in every reader, and rows
dropped for them are reported (count and first rows on stderr, all of them in data.json)."""
import json

import jax
import numpy as np
import pandas as pd
import pytest

from flaxforge.core.errors import UserError
from flaxforge.data import records, tabular, text_files
from flaxforge.trainer import loop, losses
from test_text_files import config, write_csv


def tickets(stray=(("Billing ", 1),)):
  """Support tickets: 30 'billing' and 30 'shipping' rows, plus `stray` (label, count) rows."""
  rows = [(f"invoice charge refund {i}", "billing") for i in range(30)]
  rows += [(f"parcel courier late {i}", "shipping") for i in range(30)]
  for label, n in stray:
    rows += [(f"charged twice {i}", label) for i in range(n)]
  return rows


def test_a_label_differing_only_by_case_and_a_one_row_class_are_warned_about(tmp_path, capfd):
  path = write_csv(tmp_path / "tickets.csv", tickets())
  ds = text_files.load(config(tmp_path, path, test_fraction=0.2))
  err = capfd.readouterr().err
  assert ds.info["label_names"] == ["Billing", "billing", "shipping"]  # kept as written: a class of its own
  assert "warning: tickets.csv: labels 'Billing' and 'billing' differ only by case" in err
  assert "--config.data.label_case=lower" in err
  assert "'Billing' has 1 training row" in err and "'shipping' has" not in err
  recorded = records.describe("text_file", ds)["warnings"]  # data.json, and the run summary, name them too
  assert any("differ only by case" in w for w in recorded) and any("'Billing' has 1" in w for w in recorded)
  again = text_files.load(config(tmp_path, path, test_fraction=0.2))  # a reused copy says it again
  assert again.prepared_dir == ds.prepared_dir and "differ only by case" in capfd.readouterr().err


def test_label_case_lower_merges_case_variants(tmp_path, capfd):
  path = write_csv(tmp_path / "tickets.csv", tickets(stray=(("Billing ", 4), ("SHIPPING", 3))))
  ds = text_files.load(config(tmp_path, path, label_case="lower"))
  assert ds.info["label_names"] == ["billing", "shipping"]
  assert sum(len(s) for s in ds.splits.values()) == 67 and "warning" not in capfd.readouterr().err
  assert records.describe("text_file", ds)["warnings"] == []


def test_a_table_warns_and_merges_alike(tmp_path, capfd):
  rng = np.random.default_rng(0)
  labels = ["yes"] * 40 + ["no"] * 40 + ["Yes", "yes "]
  pd.DataFrame({"x": rng.normal(size=len(labels)), "y": labels}).to_csv(tmp_path / "t.csv", index=False)
  opts = {"path": str(tmp_path / "t.csv"), "data_dir": str(tmp_path / "tfds"), "label_column": "y"}
  ds = tabular.load(opts)
  err = capfd.readouterr().err
  assert ds.info["label_names"] == ["Yes", "no", "yes"]  # "yes " is "yes": surrounding spaces never count
  assert "labels 'Yes' and 'yes' differ only by case" in err and "'Yes' has 1 training row" in err
  assert tabular.load({**opts, "label_case": "lower"}).info["label_names"] == ["no", "yes"]


MISSING_CELLS = ["NaN", "nan", "null", "None", "", "  "]


def test_missing_label_cells_are_refused_or_dropped_and_reported(tmp_path, capfd):
  """Issue 30: a label cell holding the text NaN was trained as a class named "NaN"."""
  rows = tickets(stray=())
  for i, cell in enumerate(MISSING_CELLS):
    rows[5 * i + 1] = (f"text {i}", cell)  # file rows (the header is row 1) 3, 8, 13, 18, 23, 28
  path = write_csv(tmp_path / "gaps.csv", rows)
  with pytest.raises(UserError, match=r"gaps.csv row 3: missing or empty 'label'"):
    text_files.read_table(path, "text", "label")
  ds = text_files.load(config(tmp_path, path, bad_rows="drop"))
  assert ds.info["label_names"] == ["billing", "shipping"]
  err = capfd.readouterr().err
  assert "gaps.csv: dropped 6 rows with a missing text or label (rows 3, 8, 13, 18, 23, ...; data.json lists all)" in err
  assert records.describe("text_file", ds)["dropped_rows"] == [3, 8, 13, 18, 23, 28]
  jsonl = tmp_path / "gaps.jsonl"
  jsonl.write_text("\n".join(json.dumps({"text": t, "label": y}) for t, y in rows))
  with pytest.raises(UserError, match=r"gaps.jsonl row 2: missing or empty 'label'"):
    text_files.read_table(jsonl, "text", "label")


def test_a_table_reports_the_rows_it_drops(tmp_path, capfd):
  rng = np.random.default_rng(0)
  labels = ["a", "b"] * 40
  labels[2], labels[7] = "NaN", "None"  # rows 4 and 9 of the file
  table = pd.DataFrame({"x": rng.normal(size=80), "y": labels})
  table.loc[[10, 20], "x"] = np.nan  # rows 12 and 22: dropped with missing=drop
  table.to_csv(tmp_path / "t.csv", index=False)
  opts = {"path": str(tmp_path / "t.csv"), "data_dir": str(tmp_path / "tfds"), "label_column": "y"}
  ds = tabular.load({**opts, "missing": "drop"})
  assert ds.info["label_names"] == ["a", "b"]
  err = capfd.readouterr().err
  assert "t.csv: dropped 4 rows with a missing label or value (rows 4, 9, 12, 22; data.json lists all)" in err
  assert records.describe("tabular", ds)["dropped_rows"] == [4, 9, 12, 22]
  (tmp_path / "t.jsonl").write_text("\n".join(json.dumps({"x": 1.0, "y": y}) for y in labels))
  ds = tabular.load({**opts, "path": str(tmp_path / "t.jsonl")})  # JSON strings "NaN" and "None" too
  assert ds.info["label_names"] == ["a", "b"] and records.describe("tabular", ds)["dropped_rows"] == [3, 8]


def test_balanced_class_weights_follow_scikit_learns_formula_and_weight_the_loss():
  labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 3])  # class 2 has no training row
  weights = losses.class_weights("balanced", labels, num_classes=4)
  # n_samples / (n_classes * count), the classes being those present (sklearn's compute_class_weight)
  np.testing.assert_allclose(weights, [9 / (3 * 6), 9 / (3 * 2), 0.0, 9 / (3 * 1)], rtol=1e-6)
  assert losses.class_weights("none", labels, num_classes=4) is None
  logits = np.array([[2.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.5], [0.5, 0.5, 3.0, 0.0]], np.float32)
  batch, mask = np.array([0, 1, 3]), np.array([1, 1, 0], np.float32)
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  by_hand = -np.log(p[np.arange(3), batch]) * weights[batch] * mask
  sums = jax.device_get(losses.metric_sums("cross_entropy", logits, batch, mask, class_weights=weights))
  assert float(sums["loss_sum"]) == pytest.approx(by_hand.sum(), rel=1e-5)
  assert float(sums["weight"]) == 2  # a mean over examples, as Keras' class_weight: balanced weights average 1
  with pytest.raises(UserError, match="class_weight"):
    losses.metric_sums("mse", logits[:, :1], np.zeros(3, np.float32), mask, class_weights=weights)


@pytest.mark.slow  # whole trainings
def test_a_run_weighs_its_classes_and_its_summary_repeats_the_label_warnings(tmp_path, monkeypatch, capsys):
  """train.class_weight=balanced reaches the train step with the training split's weights; the run's summary
  says the data's warnings again, after the progress lines that buried them."""
  import csv_run  # pylint: disable=g-import-not-at-top
  from flaxforge.trainer import steps  # pylint: disable=g-import-not-at-top
  path = write_csv(tmp_path / "tickets.csv", tickets(stray=(("Billing", 1),)))
  made = []
  real = steps.objective
  monkeypatch.setattr(steps, "objective", lambda *a, **k: made.append(k.get("class_weights")) or real(*a, **k))
  # (the eval step's objective, unweighted, is made too)
  csv_run.train(csv_run.config(tmp_path, path, **{"train.class_weight": "balanced", "train.num_steps": 10}),
                tmp_path / "run")
  ds = text_files.load(config(tmp_path, path, seq_len=16, num_words=200))  # the run's copy: its splits
  train_ids = np.array([ds.splits["train"][i]["label"] for i in range(len(ds.splits["train"]))])
  counts = np.bincount(train_ids, minlength=3)
  weighted = [w for w in made if w is not None]
  assert weighted, made
  np.testing.assert_allclose(weighted[0], counts.sum() / (3 * counts), rtol=1e-6)
  out = capsys.readouterr().out
  summary = out[out.index("summary:"):]
  assert "data warning: tickets.csv: labels 'Billing' and 'billing' differ only by case" in summary
  with pytest.raises(UserError, match="train.class_weight"):  # a regression has no classes to weigh
    tabular_run = tmp_path / "t.csv"
    pd.DataFrame({"x": np.arange(60.0), "y": np.arange(60.0)}).to_csv(tabular_run, index=False)
    from flaxforge.launch.configs import tabular_csv  # pylint: disable=g-import-not-at-top
    c = tabular_csv.get_config()
    c.data.path, c.data.label_column, c.data.task, c.loss = str(tabular_run), "y", "regression", "mse"
    c.data.data_dir, c.train.class_weight, c.train.progress_bar = str(tmp_path / "tfds"), "balanced", False
    loop.train(c, str(tmp_path / "regression"))
