"""Orbax checkpoints: save/restore is exact, retention keeps the newest and the best, and evaluating a
checkpoint reproduces the training run's test metrics."""
import jax
import numpy as np
import pytest

from flaxforge.core.errors import UserError
from flaxforge.launch.configs import tiny
from flaxforge.trainer import checkpoint, evaluate, loop, mesh as mesh_lib, state as state_lib


def _leaves(state):
  return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
          for x in jax.tree.leaves(state)]


def test_save_then_restore_gives_identical_state(tmp_path):
  config = tiny.get_config()
  mesh = mesh_lib.make_mesh(config.mesh)
  structure, create = state_lib.structure(config, {"input_shape": [8, 8], "num_classes": 10}, mesh, 10)
  state = create()
  expected = [x.copy() for x in _leaves(state)]
  ckpt = checkpoint.Checkpointer(tmp_path / "ckpt")
  ckpt.save(7, state, {"step": 7, "data": {"next_index": 7}})
  ckpt.wait()
  restored, meta, step = ckpt.restore(None, structure.abstract)
  assert step == 7 and meta["data"] == {"next_index": 7}
  for a, b in zip(expected, _leaves(restored)):
    np.testing.assert_array_equal(a, b)
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  ckpt.close()


def test_retention_keeps_the_newest_and_the_best(tmp_path):
  config = tiny.get_config()
  mesh = mesh_lib.make_mesh(config.mesh)
  _, create = state_lib.structure(config, {"input_shape": [8, 8], "num_classes": 10}, mesh, 10)
  state = create()
  ckpt = checkpoint.Checkpointer(tmp_path / "ckpt", keep=2, best_metric="accuracy", best_mode="max", keep_best=1)
  for step, acc in zip(range(1, 7), [0.5, 0.9, 0.6, 0.7, 0.4, 0.3]):
    ckpt.save(step, state, {"step": step, "validation": {"accuracy": acc}}, metrics={"accuracy": acc})
    ckpt.wait()
  assert ckpt.steps() == [2, 5, 6]
  assert ckpt.latest_step() == 6 and ckpt.best_step() == 2
  ckpt.close()


def test_a_tie_for_the_best_goes_to_the_earliest_step(tmp_path):
  """--best and the run's closing summary name the same step: the first to reach the best value."""
  config = tiny.get_config()
  mesh = mesh_lib.make_mesh(config.mesh)
  _, create = state_lib.structure(config, {"input_shape": [8, 8], "num_classes": 10}, mesh, 10)
  state = create()
  for mode, values, best in (("max", [0.5, 0.9, 0.6, 0.9, 0.3], 2), ("min", [0.5, 0.2, 0.6, 0.2, 0.3], 2)):
    ckpt = checkpoint.Checkpointer(tmp_path / mode, keep=5, best_metric="loss", best_mode=mode)
    for step, value in enumerate(values, 1):
      ckpt.save(step, state, {"step": step, "validation": {"loss": value}}, metrics={"loss": value})
      ckpt.wait()
    assert ckpt.steps() == [1, 2, 3, 4, 5] and ckpt.best_step() == best
    ckpt.close()
    # Retention keeps that same step (Orbax's BestN alone would keep the latest of a tie, step 4).
    ckpt = checkpoint.Checkpointer(tmp_path / f"{mode}_keep1", keep=1, best_metric="loss", best_mode=mode)
    for step, value in enumerate(values, 1):
      ckpt.save(step, state, {"step": step, "validation": {"loss": value}}, metrics={"loss": value})
      ckpt.wait()
    assert ckpt.steps() == [best, 5] and ckpt.best_step() == best
    ckpt.close()


@pytest.mark.slow  # a whole training
def test_eval_from_checkpoint_reproduces_training_metrics(tmp_path):
  config = tiny.get_config()
  trained = loop.train(config, str(tmp_path))
  evaluated = evaluate.evaluate_workdir(str(tmp_path))
  assert evaluated["step"] == config.train.num_steps
  assert evaluated["accuracy"] == trained["accuracy"] and evaluated["loss"] == trained["loss"]
  assert (tmp_path / "report" / f"test_step{config.train.num_steps}_confusion.png").exists()


def test_a_checkpoint_of_another_model_lists_the_differing_arrays(tmp_path):
  """The last line of defence when no run identity answers first (a copied checkpoints folder): the saved
  tree is compared with the model's before any array is read."""
  config = tiny.get_config()
  mesh = mesh_lib.make_mesh(config.mesh)
  info = {"input_shape": [8, 8], "num_classes": 10}
  _, create = state_lib.structure(config, info, mesh, 10)
  ckpt = checkpoint.Checkpointer(tmp_path / "ckpt")
  ckpt.save(3, create(), {"step": 3})
  ckpt.wait()
  config.model.hidden = (7,)
  other, _ = state_lib.structure(config, info, mesh, 10)
  fit = r"does not fit this model/config.*layers\.0\.kernel: checkpoint \(64, \d+\) vs model \(64, 7\)"
  with pytest.raises(UserError, match=fit):
    ckpt.restore(None, other.abstract)
  ckpt.close()
