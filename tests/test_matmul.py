"""models/matmul.py: the CPU dense dot_general equals lax.dot_general, values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from flaxforge.models import matmul


@pytest.mark.parametrize("x_shape, w_shape, n", [((6, 5), (5, 3), 1), ((2, 4, 5), (5, 3, 2, 4), 1),
                                                  ((2, 4, 3, 2), (3, 2, 5), 2)])
def test_values_and_gradients_equal_lax(x_shape, w_shape, n):
  x = jax.random.normal(jax.random.key(0), x_shape)
  w = jax.random.normal(jax.random.key(1), w_shape)
  dims = ((tuple(range(len(x_shape) - n, len(x_shape))), tuple(range(n))), ((), ()))
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w, dims)))
  want = jax.value_and_grad(loss(jax.lax.dot_general), argnums=(0, 1))(x, w)
  got = jax.jit(jax.value_and_grad(loss(matmul.dot_general), argnums=(0, 1)))(x, w)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_other_contractions_fall_back_to_lax():
  x, w = jnp.ones((3, 4, 5)), jnp.ones((3, 5, 2))
  dims = (((2,), (1,)), ((0,), (0,)))  # batched: not a dense layer
  np.testing.assert_array_equal(matmul.dot_general(x, w, dims), jax.lax.dot_general(x, w, dims))


def test_in_an_nnx_linear_with_mixed_precision():
  plain = nnx.Linear(8, 4, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  ours = nnx.Linear(8, 4, dtype=jnp.bfloat16, dot_general=matmul.dot_general, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(2), (3, 8))
  assert ours(x).dtype == jnp.bfloat16
  np.testing.assert_allclose(ours(x).astype(jnp.float32), plain(x).astype(jnp.float32), rtol=1e-2, atol=1e-2)
