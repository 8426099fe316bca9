"""The seed's MLP: shapes, parameter counts, activations and initialisers do what their names say."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flaxforge.core.errors import UserError
from flaxforge.models import fields, initializers, mlp, registry
from flaxforge.models.mlp import MLP


def test_shapes_and_parameter_count():
  model = MLP(64, 10, fields.MLP(hidden=(32, 16)), rngs=nnx.Rngs(0))
  assert model(jnp.ones((5, 8, 8))).shape == (5, 10)
  params = jax.tree.leaves(nnx.state(model, nnx.Param))
  assert sum(p.size for p in params) == (64 * 32 + 32) + (32 * 16 + 16) + (16 * 10 + 10)


@pytest.mark.parametrize("name,expected", [
    ("relu", lambda x: np.maximum(x, 0)),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    ("tanh", np.tanh),
    ("gelu", lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))),
])
def test_activation_is_the_named_function_inside_the_model(name, expected):
  model = MLP(4, 2, fields.MLP(hidden=(3,), activation=name, dropout=0.0), rngs=nnx.Rngs(1))
  x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
  w1, b1 = np.asarray(model.layers[0].kernel[...]), np.asarray(model.layers[0].bias[...])
  w2, b2 = np.asarray(model.layers[1].kernel[...]), np.asarray(model.layers[1].bias[...])
  np.testing.assert_allclose(model(x), expected(x @ w1 + b1) @ w2 + b2, rtol=1e-5, atol=1e-5)


def _sample(name, shape=(400, 300), std=0.01, limit=0.05):
  return np.asarray(initializers.initializer(name, std=std, limit=limit)(jax.random.key(0), shape, jnp.float32))


def test_normal_initialiser_has_the_given_std():
  w = _sample("normal", std=0.05)
  assert abs(w.mean()) < 0.002 and abs(w.std() - 0.05) < 0.002


def test_uniform_initialiser_fills_its_range():
  w = _sample("uniform", limit=0.1)
  assert w.min() >= -0.1 and w.max() <= 0.1
  assert w.min() < -0.099 and w.max() > 0.099 and abs(w.std() - 0.1 / np.sqrt(3)) < 0.002


@pytest.mark.parametrize("name,variance", [
    ("he_normal", 2 / 400), ("lecun_normal", 1 / 400), ("xavier_normal", 2 / 700),
    ("he_uniform", 2 / 400), ("xavier_uniform", 2 / 700),
])
def test_fan_scaled_initialisers_have_their_variance(name, variance):
  assert abs(_sample(name).var() / variance - 1) < 0.05


def test_zeros():
  assert np.all(_sample("zeros") == 0)


def test_dropout_only_in_training_mode():
  model = MLP(8, 3, fields.MLP(hidden=(64,), dropout=0.5), rngs=nnx.Rngs(0, dropout=1))
  x = jnp.ones((4, 8))
  model.eval()
  np.testing.assert_array_equal(model(x), model(x))
  model.train()
  assert not np.allclose(model(x), model(x))


def test_unknown_names_are_user_errors_naming_the_field():
  info = {"input_shape": (4,), "num_classes": 2}
  with pytest.raises(UserError, match=r"config.model.activation = 'swishy' is not one of: relu, sigmoid"):
    mlp.from_config({"activation": "swishy"}, info, rngs=nnx.Rngs(0))
  with pytest.raises(UserError, match=r"config.model.kernel_init = 'magic' is not one of: normal, uniform"):
    mlp.from_config({"kernel_init": "magic"}, info, rngs=nnx.Rngs(0))
  cfg = type("C", (), {"name": "nope"})()
  with pytest.raises(UserError, match="unknown model"):
    registry.build(cfg, {}, rngs=nnx.Rngs(0))
