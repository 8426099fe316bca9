"""A `dot_general` for dense layers whose weight gradient runs on XLA:CPU's fast matmul kernel.

The weight gradient of `y = x @ w` contracts x and dy over their rows. XLA:CPU's YNNPACK matmul takes a
left operand only when it contracts its last dimension, and XLA tends to hand `x^T @ dy` to Eigen with x
transposed, which runs more slowly. Written as `(dy^T @ x)^T`, the transposed copy is the (smaller)
output gradient and the matmul stays on YNNPACK (BENCHMARKS.md, "Dense layers' weight gradients on
YNNPACK"). Other backends keep `lax.dot_general`, and so does any contraction that is not "trailing dims
of x with leading dims of w".
"""
import math

import jax
from jax import lax


@jax.custom_vjp
def _matmul_2d(x, w):
  return x @ w


def _matmul_fwd(x, w):
  return x @ w, (x, w)


def _matmul_bwd(res, dy):
  x, w = res
  return dy @ w.T, (dy.T @ x).T


_matmul_2d.defvjp(_matmul_fwd, _matmul_bwd)


def dot_general(x, w, dimension_numbers, precision=None, preferred_element_type=None, out_sharding=None):
  """Drop-in for `lax.dot_general` in nnx.Linear / nnx.LinearGeneral (`dot_general=`)."""
  (lhs_contract, rhs_contract), batch = dimension_numbers
  n = len(lhs_contract)
  dense = (batch == ((), ()) and tuple(lhs_contract) == tuple(range(x.ndim - n, x.ndim))
           and tuple(rhs_contract) == tuple(range(n)))
  if not dense or jax.default_backend() != "cpu" or precision is not None or out_sharding is not None:
    return lax.dot_general(x, w, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type, out_sharding=out_sharding)
  if preferred_element_type is not None:
    x, w = x.astype(preferred_element_type), w.astype(preferred_element_type)
  batch_shape, k = x.shape[:x.ndim - n], math.prod(x.shape[x.ndim - n:])
  y = _matmul_2d(x.reshape(math.prod(batch_shape), k), w.reshape(k, -1))
  return y.reshape(*batch_shape, *w.shape[n:])
