"""Attention forward + backward on XLA:CPU at MiniLM's shapes (batch 32, sequence 128, 12 heads of 32):
the trainer's per-head loop (models/attention.py attention_per_head: additive mask, FlashAttention's
backward), the per-head loop it replaced (select mask, XLA's autodiff) and the same with an additive mask,
heads in groups of 2/3/4, all 12 batched, and jax.nn.dot_product_attention. Alternating, medians of 7
calls, milliseconds.

  .venv/bin/python benchmarks/attention_cpu.py
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from flaxforge.models.attention import attention_per_head

B, T, N, H = 32, 128, 12, 32
MASK = (jnp.arange(T) < 100)[None, None, None, :].repeat(B, 0)  # keys after 100 are padding
LOWEST = jnp.finfo(jnp.float32).min


def grouped(g):
  def attend(q, k, v):
    out = []
    for i in range(0, N, g):
      logits = jnp.einsum("btnh,bsnh->bnts", q[:, :, i:i + g], k[:, :, i:i + g]) / np.sqrt(H)
      logits = jnp.where(MASK, logits, LOWEST)
      out.append(jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(logits, -1), v[:, :, i:i + g]))
    return jnp.concatenate(out, 2)
  return attend


def per_head_autodiff(q, k, v):
  ks, vs = jnp.unstack(k, axis=2), jnp.unstack(v, axis=2)
  heads = []
  for n, qn in enumerate(jnp.unstack(q, axis=2)):
    logits = jnp.where(MASK[:, 0], jnp.einsum("bth,bsh->bts", qn, ks[n]) / np.sqrt(H), LOWEST)
    heads.append(jnp.einsum("bts,bsh->bth", jax.nn.softmax(logits, -1), vs[n]))
  return jnp.stack(heads, 2)


def per_head_bias(q, k, v):
  bias = jnp.where(MASK[:, 0, 0], 0.0, LOWEST)[:, None, :]
  ks, vs = jnp.unstack(k, axis=2), jnp.unstack(v, axis=2)
  heads = []
  for n, qn in enumerate(jnp.unstack(q / np.sqrt(H), axis=2)):
    logits = jnp.einsum("bth,bsh->bts", qn, ks[n]) + bias
    heads.append(jnp.einsum("bts,bsh->bth", jax.nn.softmax(logits, -1), vs[n]))
  return jnp.stack(heads, 2)


VARIANTS = {
    "per_head (trainer)": lambda q, k, v: attention_per_head(q, k, v, mask=MASK),
    "per_head, autodiff (until 11-30)": per_head_autodiff,
    "per_head, autodiff, additive mask": per_head_bias,
    "groups of 2": grouped(2), "groups of 3": grouped(3), "groups of 4": grouped(4), "all 12 batched": grouped(N),
    "jax.nn.dot_product_attention": lambda q, k, v: jax.nn.dot_product_attention(q, k, v, mask=MASK),
}


def main():
  key = jax.random.key(0)
  q, k, v = (jax.random.normal(jax.random.fold_in(key, i), (B, T, N, H)) for i in range(3))
  grads = {}
  for name, attend in VARIANTS.items():
    grads[name] = jax.jit(jax.grad(lambda q, k, v, f=attend: (f(q, k, v) ** 2).sum(), argnums=(0, 1, 2)))
    jax.block_until_ready(grads[name](q, k, v))
  times = {name: [] for name in grads}
  for _ in range(7):
    for name, grad in grads.items():
      start = time.perf_counter()
      jax.block_until_ready(grad(q, k, v))
      times[name].append(time.perf_counter() - start)
  for name, seconds in times.items():
    print(f"{name:32s} {1000 * np.median(seconds):6.1f} ms")


if __name__ == "__main__":
  main()
