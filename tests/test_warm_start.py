"""Warm start (train.init_from): a new run with another classification head takes every other parameter
of the old run bit for bit, initialises only the head afresh (and lists it), and a resume ignores it."""
import csv

import jax
import numpy as np
import pytest
from flax import nnx

import csv_run
from flaxforge.core.errors import UserError
from flaxforge.trainer import loop, mesh as mesh_lib, restore, run_data, state as state_lib, warm_start

pytestmark = pytest.mark.slow  # whole trainings


def _relabelled(src, dst):
  """The same texts, labelled space / ground: two classes instead of three."""
  with open(src, encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  with open(dst, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(("text", "label"))
    writer.writerows((r["text"], "space" if r["label"] == "space" else "ground") for r in rows)
  return dst


def _params(state) -> dict:
  """{name: array} of the model's parameters ('0.out.bias' in the train state -> 'out.bias')."""
  return {k[2:]: np.asarray(v) for k, v in warm_start.named_leaves(nnx.filter_state(state, nnx.Param)).items()}


def _bytes_of_the_rest(state) -> list[bytes]:
  """Every other leaf (optimizer state, RNG streams, keys as their data), as bytes."""
  leaves = jax.tree.leaves(nnx.filter_state(state, nnx.Not(nnx.Param)))
  is_key = lambda x: jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)  # pylint: disable=unnecessary-lambda-assignment
  return [np.asarray(jax.random.key_data(x) if is_key(x) else x).tobytes() for x in leaves]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("warm")
  three = csv_run.write_topics(tmp / "three.csv", n=150, topics=("space", "food", "sport"))
  old = csv_run.config(tmp, three)
  csv_run.train(old, tmp / "old")
  return tmp, csv_run.config(tmp, _relabelled(three, tmp / "two.csv"))


def test_only_the_mismatched_head_is_fresh_and_the_rest_is_copied_bit_for_bit(runs):
  tmp, new = runs
  info = run_data.load_data(new).info
  mesh = mesh_lib.make_mesh(new.mesh)
  _, create = state_lib.structure(new, info, mesh, total_steps=20)
  fresh = create()
  warm, line = warm_start.apply(str(tmp / "old" / "checkpoints" / "20"), create(), mesh)
  assert line.endswith("copied 2 of 4 parameter arrays; freshly initialised: out.bias (2,) (theirs (3,)), "
                       "out.kernel (16, 2) (theirs (16, 3))"), line
  old, warm_params, fresh_params = _params(restore.restore(str(tmp / "old")).state), _params(warm), _params(fresh)
  assert sorted(warm_params) == ["bias", "embed.embedding", "out.bias", "out.kernel"]
  for name, value in warm_params.items():
    expected = fresh_params[name] if name.startswith("out.") else old[name]
    assert value.tobytes() == expected.tobytes(), name
    if not name.startswith("out."):
      assert value.tobytes() != fresh_params[name].tobytes(), name  # the copy is not the fresh initialisation
  assert _bytes_of_the_rest(warm) == _bytes_of_the_rest(fresh)  # a fresh optimizer and the new run's RNG


def test_the_loop_warm_starts_a_new_run_only(runs, capsys):
  tmp, new = runs
  new.train.init_from = str(tmp / "old")
  csv_run.train(new, tmp / "new")
  assert "warm start from step 20 in" in capsys.readouterr().out
  new.train.num_steps = 30  # a resume: init_from is ignored
  csv_run.train(new, tmp / "new")
  out = capsys.readouterr().out
  assert "resumed from the checkpoint at step 20" in out and "warm start" not in out


def test_a_wrong_init_from_is_one_line(tmp_path, runs):
  _, new = runs
  new.train.init_from = str(tmp_path)
  with pytest.raises(UserError, match="neither a work directory with checkpoints nor"):
    loop.train(new, str(tmp_path / "w"))


def test_the_refusal_of_a_changed_run_names_init_from(runs):
  tmp, _ = runs
  changed = csv_run.config(tmp, tmp / "three.csv", **{"optimizer.learning_rate": 0.5})
  with pytest.raises(UserError, match=f"--workdir=NEW --config.train.init_from={tmp / 'old'}$"):
    loop.train(changed, str(tmp / "old"))
