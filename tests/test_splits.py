"""data/splits.py: label names <-> ids, the stratified hold-out every labelled loader calls, splits by position."""
import json

import numpy as np
import pytest

from flaxforge.core.errors import UserError
from flaxforge.data import splits


def test_label_encoder():
  labels = splits.label_encoder(["10", 2, "1", "2"])
  assert labels.names == ("1", "2", "10")  # all integers: numeric order
  np.testing.assert_array_equal(labels.encode([2, "10"]), [1, 2])
  assert labels.decode([0, 2]) == ["1", "10"]
  assert splits.label_encoder(["pos", "neg", "pos"]).names == ("neg", "pos")
  assert splits.LabelEncoder.from_json(json.loads(json.dumps(labels.to_json()))) == labels
  with pytest.raises(UserError, match="unknown label '3'"):
    labels.encode(["3"])


def test_holdout_is_stratified_seeded_and_partitions():
  labels = np.repeat([0, 1, 2], [100, 50, 10])
  val, test, train = splits.holdout(labels, [0.1, 0.2], seed=0)
  assert np.bincount(labels[val]).tolist() == [10, 5, 1]
  assert np.bincount(labels[test]).tolist() == [20, 10, 2]
  assert sorted(np.concatenate([val, test, train]).tolist()) == list(range(160))
  again = splits.holdout(labels, [0.1, 0.2], seed=0)
  assert all((a == b).all() for a, b in zip(again, [val, test, train]))
  assert not (splits.holdout(labels, [0.1, 0.2], seed=1)[0] == val).all()


def test_hold_out_draws_test_first_so_a_refit_tests_on_the_same_rows():
  labels = np.repeat([0, 1], [60, 40])
  chosen = splits.hold_out(labels, validation=0.2, test=0.1, seed=5, where="x", size="100 rows")
  refit = splits.hold_out(labels, validation=0, test=0.1, seed=5, where="x", size="100 rows")
  assert list(chosen) == ["train", "validation", "test"] and list(refit) == ["train", "test"]
  assert np.bincount(labels[chosen["test"]]).tolist() == [6, 4]
  assert np.bincount(labels[chosen["validation"]]).tolist() == [12, 8]
  np.testing.assert_array_equal(chosen["test"], refit["test"])
  np.testing.assert_array_equal(refit["train"], np.sort(np.concatenate([chosen["train"], chosen["validation"]])))
  only_validation = splits.hold_out(labels, validation=0.5, seed=5, where="x", size="100 rows")
  assert list(only_validation) == ["train", "validation"] and len(only_validation["validation"]) == 50


def test_hold_out_refuses_an_empty_split_in_one_line():
  labels = np.repeat([0, 1], [3, 3])
  with pytest.raises(UserError, match=r"^x: the test split is empty \(6 rows\); add rows or raise "
                                      r"--config.data.test_fraction$"):
    splits.hold_out(labels, validation=0.5, test=0.1, seed=0, where="x", size="6 rows", add="add rows")
  with pytest.raises(UserError, match=r"the train split is empty .* lower --config.data.validation_fraction$"):
    splits.hold_out(labels, validation=0.9, seed=0, where="x", size="6 rows")


def test_by_position_cuts_train_validation_test_in_order():
  assert splits.by_position(100, 0.1, 0.25) == {"train": (0, 65), "validation": (65, 75), "test": (75, 100)}
  assert splits.by_position(10, 0, 0.2) == {"train": (0, 8), "test": (8, 10)}
