"""Analytic FLOP counts, device peak FLOP/s and model FLOP utilisation (MFU).

Convention (as in /work/shared/bench/common.py): FLOPs = 2 x the multiply-accumulates of matmuls and
convolutions; embedding lookups, activations, softmax, norms, pooling and the optimizer update are not
counted. A training step costs 3 x forward (forward, input-gradient and weight-gradient matmuls), except
where an input gradient is never needed (a first layer fed directly by data).
"""
import functools
import statistics
import time

import jax
import jax.numpy as jnp


def transformer_flops_per_token(num_layers, embed_dim, mlp_dim, seq_len, vocab_size, *, qkv_dim=None,
                                training=True, causal=False):
  """FLOPs per token of a transformer (GPT/BERT body, plus an LM head if vocab_size > 0).

  With a = qkv_dim (num_heads * head_dim, default embed_dim), d = embed_dim, T = seq_len:
    N        = L * (4*d*a + 2*d*mlp) + d*vocab   matmul weights (q, k, v, out; mlp up, down; LM head)
    attn     = 4 * L * T * a                     QK^T and AV: 2*T*a FLOPs each, per token and layer
    forward  = 2*N + attn
    training = 3 * forward = 6*N + 12*L*T*a      (the PaLM paper's formula)
  causal=True halves the attention term (a query needs only the keys before it); leave it False for
  jax.nn.dot_product_attention's XLA path, which computes all T x T scores and masks them.
  """
  a = qkv_dim or embed_dim
  n_matmul = num_layers * (4 * embed_dim * a + 2 * embed_dim * mlp_dim) + embed_dim * vocab_size
  attn = 4 * num_layers * seq_len * a * (0.5 if causal else 1.0)
  forward = 2 * n_matmul + attn
  return 3 * forward if training else forward


def transformer_classifier_flops_per_example(num_layers, embed_dim, mlp_dim, seq_len, num_classes, *,
                                             qkv_dim=None, training=True):
  """Encoder over seq_len tokens + one pooled [d, classes] head (matches bench/common.py)."""
  body = seq_len * transformer_flops_per_token(num_layers, embed_dim, mlp_dim, seq_len, 0, qkv_dim=qkv_dim,
                                               training=False)
  forward = body + 2 * embed_dim * num_classes
  return 3 * forward if training else forward


def mlp_flops_per_example(layer_sizes, *, training=True):
  """Dense stack, layer_sizes = [in, hidden..., out]."""
  forward = 2 * sum(a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))
  if not training:
    return forward
  # No framework computes the input gradient of the first layer (its input is data).
  return 3 * forward - 2 * layer_sizes[0] * layer_sizes[1]


def text_cnn_flops_per_example(seq_len=100, embed_dim=16, num_classes=20, *, conv_features=(32, 64),
                               kernel_size=7, pool=7, dense=64, training=True):
  """Seed text CNN: Embedding -> Conv1D(k, 'valid') -> MaxPool(pool) -> Conv1D(k) -> GlobalMaxPool ->
  Dense(dense) -> Dense(classes). Training = 3 x forward: the embedding output needs its gradient, so the
  first convolution's input gradient counts."""
  c1, c2 = conv_features
  l1 = seq_len - kernel_size + 1
  l2 = l1 // pool - kernel_size + 1
  macs = l1 * kernel_size * embed_dim * c1 + l2 * kernel_size * c1 * c2 + c2 * dense + dense * num_classes
  return 3 * 2 * macs if training else 2 * macs


# Dense (no sparsity) peak FLOP/s per chip, keyed by a substring of jax.devices()[0].device_kind; the first
# match wins, so specific names come first. 'float32' is the rate of float32 matmuls at JAX's default
# precision: TF32 tensor cores on A100/H100/H200, bf16 passes on TPU (so TPUs list bfloat16 only).
PEAK_FLOPS = {
  "TPU v6 lite": {"bfloat16": 918e12},  # v6e (Trillium)
  "TPU v5 lite": {"bfloat16": 197e12},  # v5e
  "TPU v5": {"bfloat16": 459e12},  # v5p ("TPU v5" or "TPU v5p")
  "TPU v4": {"bfloat16": 275e12},
  "H200": {"bfloat16": 989e12, "float32": 494.5e12},
  "H100 PCIe": {"bfloat16": 756e12, "float32": 378e12},
  "H100": {"bfloat16": 989e12, "float32": 494.5e12},  # SXM
  "A100": {"bfloat16": 312e12, "float32": 156e12},
}


def device_peak_flops(device_kind, dtype="bfloat16"):
  """Per-chip peak for a device_kind string, or None if unknown."""
  for name, peaks in PEAK_FLOPS.items():
    if name.lower() in device_kind.lower():
      return peaks.get(dtype, peaks.get("bfloat16"))
  return None


@functools.lru_cache(maxsize=None)
def measured_cpu_peak(n=2048, reps=10):
  """Median FLOP/s of a jitted float32 n x n matmul on the host CPU (all cores)."""
  cpu = jax.devices("cpu")[0]
  a = jax.device_put(jnp.ones((n, n), jnp.float32), cpu)
  f = jax.jit(jnp.matmul)
  for _ in range(2):  # compile + warm up
    f(a, a).block_until_ready()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    f(a, a).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * n**3 / statistics.median(times)


def system_peak_flops(dtype="bfloat16", devices=None):
  """Peak of all `devices` together (default jax.devices()), or None if unknown.

  On CPU, fake devices share the host's cores, so the measured host peak is returned once, not multiplied
  by the device count.
  """
  devices = devices or jax.devices()
  if devices[0].platform == "cpu":
    return measured_cpu_peak()
  per_chip = device_peak_flops(devices[0].device_kind, dtype)
  return None if per_chip is None else per_chip * len(devices)


def mfu(flops_per_second, peak):
  """Model FLOP utilisation: achieved / peak (None if the peak is unknown)."""
  return flops_per_second / peak if peak else None


def xla_flops(stage):
  """XLA's FLOP count for a jax.jit(...).lower(...) or .compile() result, NaN if unavailable.

  A Lowered stage counts the whole unpartitioned program (no compile needed); a Compiled one counts the
  optimised program, per device if it is partitioned. cost_analysis() is a dict in current jax, a list of
  per-program dicts in older ones.
  """
  cost = stage.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost.get("flops", float("nan"))) if cost else float("nan")
