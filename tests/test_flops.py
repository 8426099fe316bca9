"""Analytic FLOP counts against hand derivations and XLA, peak lookup, MFU arithmetic."""
import json
import time

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx

from flaxforge.models import bert, gpt, transformer
from flaxforge.models.mlp import mlp_flops_per_example
from flaxforge.models.text_cnn import text_cnn_flops_per_example
from flaxforge.models.transformer import transformer_classifier_flops_per_example, transformer_flops_per_token
from flaxforge.trainer import flops, interval


def test_seed_workloads_match_the_benchmark_counts():
  # Text CNN (seq 100, emb 16): conv1 94 positions x 7 x 16 x 32, pool -> 13, conv2 7 x 7 x 32 x 64,
  # dense 64x64 and 64x20: 336,896 + 100,352 + 4,096 + 1,280 = 442,624 MACs.
  assert text_cnn_flops_per_example(training=False) == 2 * 442_624
  assert text_cnn_flops_per_example() == 6 * 442_624
  # MLP 784-512-512-10: 401,408 + 262,144 + 5,120 = 668,672 MACs; training drops the first layer's
  # input gradient: 3 * 1,337,344 - 2 * 401,408.
  assert mlp_flops_per_example([784, 512, 512, 10], training=False) == 1_337_344
  assert mlp_flops_per_example([784, 512, 512, 10]) == 3_209_216
  # Encoder classifier, 4 x 256, mlp 1024, seq 128, 20 classes: per layer 128 * (4*256^2 + 2*256*1024)
  # + 2 * 128^2 * 256 = 109,051,904 MACs; x4 + 256*20 = 436,212,736 MACs.
  assert transformer_classifier_flops_per_example(4, 256, 1024, 128, 20, training=False) == 872_425_472
  # Pooled ([CLS] or last token): the last layer's k and v for 128 tokens (128 * 2 * 256^2 = 16,777,216 MACs)
  # and the rest for one position (851,968 - 2 * 128 * 256 = 720,896): 3 * 109,051,904 + 17,498,112 + 5,120.
  assert transformer_classifier_flops_per_example(4, 256, 1024, 128, 20, training=False,
                                                  pooled=True) == 2 * 344_658_944


def test_transformer_formula_gpt2_small():
  # N = 12 * (4*768^2 + 2*768*3072) + 768*50257 = 123,532,032 matmul weights;
  # training = 6N + 12 * 12 layers * 1024 tokens * 768 = 741,192,192 + 113,246,208.
  assert transformer_flops_per_token(12, 768, 3072, 1024, 50257) == 854_438_400
  assert transformer_flops_per_token(12, 768, 3072, 1024, 50257, training=False) == 854_438_400 / 3
  causal = transformer_flops_per_token(12, 768, 3072, 1024, 50257, causal=True)
  assert causal == 854_438_400 - 113_246_208 / 2


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:GPU leaves cuBLAS/cuDNN calls uncounted")
def test_analytic_matches_xla_for_small_gpt_training():
  batch, seq, vocab = 2, 64, 256
  model = gpt.from_config({"size": "tiny"}, {"vocab_size": vocab, "seq_len": seq}, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(params, x):
    logits = nnx.merge(graphdef, params, rest)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, x).mean()

  x = jnp.zeros((batch, seq), jnp.int32)
  xla = flops.xla_flops(jax.jit(jax.grad(loss)).lower(params, x))
  analytic = batch * seq * transformer_flops_per_token(2, 64, 256, seq, vocab)
  assert abs(xla / analytic - 1) < 0.15, (xla, analytic)


@pytest.mark.parametrize("name,pool", [("bert", "cls"), ("bert", "mean"), ("gpt", None)])
def test_classifier_counts_follow_xla_and_the_pruned_last_block(name, pool):
  # XLA counts what the compiled forward does; the pooled count leaves out the pruned last block's work
  # (XLA still sees that block's q projection for every token, ~6% here), the full count does not.
  seq, cfg = 64, {"size": "tiny", "pool": pool}
  info = {"task": "classification", "num_classes": 5, "vocab_size": 256, "seq_len": seq}
  module = {"bert": bert, "gpt": gpt}[name]
  model = module.from_config(cfg, info, rngs=nnx.Rngs(0))
  model.eval()
  graphdef, state = nnx.split(model)
  xla = flops.xla_flops(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)).lower(state, jnp.ones((2, seq), jnp.int32)))
  analytic = 2 * module.flops_per_example(cfg, info) / 3
  assert abs(xla / analytic - 1) < 0.12, (xla, analytic)  # XLA also counts norms, softmax, GELU
  a = transformer.arch_from_config(cfg, info)
  full = 2 * transformer_classifier_flops_per_example(a.num_layers, a.embed_dim, a.mlp_dim, seq, 5, training=False)
  assert (analytic < 0.9 * full) == (pool != "mean"), (analytic, full)


def test_xla_flops_of_a_matmul_and_old_list_format():
  compiled = jax.jit(jnp.matmul).lower(jnp.ones((64, 32)), jnp.ones((32, 16))).compile()
  assert flops.xla_flops(compiled) == 2 * 64 * 32 * 16

  class OldStyle:
    def cost_analysis(self):
      return [{"flops": 7.0}]

  assert flops.xla_flops(OldStyle()) == 7.0


@pytest.mark.parametrize("kind, dtype, peak", [
    ("TPU v4", "bfloat16", 275e12),
    ("TPU v5 lite", "bfloat16", 197e12),
    ("TPU v5", "bfloat16", 459e12),
    ("TPU v5p", "float32", 459e12),  # TPUs run float32 matmuls as bf16 passes by default
    ("TPU v6 lite", "bfloat16", 918e12),
    ("NVIDIA A100-SXM4-80GB", "bfloat16", 312e12),
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989e12),
    ("NVIDIA H100 PCIe", "bfloat16", 756e12),
    ("NVIDIA H200", "float32", 494.5e12),
    ("some new chip", "bfloat16", None),
])
def test_device_peak_lookup(kind, dtype, peak):
  assert flops.device_peak_flops(kind, dtype) == peak


def test_mfu_arithmetic():
  # GPT-2 small at 100k tokens/s on one H100: 854,438,400 * 1e5 / 989e12.
  achieved = transformer_flops_per_token(12, 768, 3072, 1024, 50257) * 100_000
  assert flops.mfu(achieved, 989e12) == pytest.approx(0.0863942, rel=1e-5)
  assert flops.mfu(achieved, None) is None


def test_measured_cpu_peak_is_the_fastest_matmul_rate(monkeypatch):
  """The arithmetic on a fake clock (timed matmuls of 0.5, 0.25 and 1 s, 2 n^3 FLOPs each: the fastest
  counts); then the real rate against an independent best-of timing of the same matmul, within 2x."""
  with monkeypatch.context() as m:
    clock = iter([0, 0.5, 10, 10.25, 20, 21])
    m.setattr(flops.time, "perf_counter", lambda: next(clock))
    assert flops.measured_cpu_peak.__wrapped__(n=64, reps=3) == 2 * 64**3 / 0.25
  peak = flops.measured_cpu_peak(n=512, reps=20)
  assert flops.measured_cpu_peak(n=512, reps=20) == peak  # cached
  a = jnp.ones((512, 512), jnp.float32)
  f = jax.jit(jnp.matmul)
  f(a, a).block_until_ready()
  times = []
  for _ in range(20):
    start = time.perf_counter()
    f(a, a).block_until_ready()
    times.append(time.perf_counter() - start)
  assert 0.5 < peak / (2 * 512**3 / min(times)) < 2


def test_the_cpu_peak_is_the_best_measured_on_this_host_and_says_so(monkeypatch, tmp_path):
  """Measured once per host and kept; measured again only by a clearly quieter start (a loaded start-up
  measures a low peak), and the best one kept is what MFU divides by."""
  cache = tmp_path / "peak.json"
  monkeypatch.setenv("FLAXFORGE_CPU_PEAK_CACHE", str(cache))
  measured, taken = iter([100e9, 50e9, 200e9]), []
  monkeypatch.setattr(flops, "measured_cpu_peak", lambda: taken.append(1) or next(measured))

  def peak_at(load):
    monkeypatch.setattr(flops, "_load_average", lambda: load)
    return flops.cpu_peak()

  first = peak_at(2.0)
  assert first.flops == 100e9 and "2048x2048 float32 matmul" in first.source and str(cache) in first.source
  assert "load average 2.0" in first.source and len(taken) == 1
  assert peak_at(1.6) == first and len(taken) == 1  # not quieter by flops.QUIETER: not measured
  assert peak_at(1.5) == first and len(taken) == 2  # quieter: measured (50e9), the best kept
  assert peak_at(1.2) == first and len(taken) == 2  # not quieter than that last measurement
  assert peak_at(0.9).flops == 200e9 and len(taken) == 3  # a faster one replaces it
  stored = json.loads(cache.read_text())
  assert [v["flops"] for v in stored.values()] == [200e9] and flops._host() in stored  # pylint: disable=protected-access
  cache.write_text("{not json")  # a damaged cache is measured over
  monkeypatch.setattr(flops, "measured_cpu_peak", lambda: 7.0)
  assert flops.cpu_peak().flops == 7.0 and json.loads(cache.read_text())[flops._host()]["flops"] == 7.0  # pylint: disable=protected-access
  # Fake CPU devices share the host's cores: the system peak is the host's, not multiplied by 8.
  assert flops.system_peak(devices=jax.devices("cpu")).flops == 7.0
  h100 = flops.system_peak("bfloat16", devices=[type("D", (), {"platform": "gpu", "device_kind": "NVIDIA H100"})()] * 2)
  assert h100.flops == 2 * 989e12 and "PEAK_FLOPS" in h100.source


def test_a_train_record_carries_the_peak_its_mfu_used():
  sums = {"weight": 32.0, "loss_sum": 16.0, "correct": 8.0, "grad_norm_sum": 2.0, "steps": 2.0, "nonfinite": 0}
  peak = flops.Peak(1e11, "a test peak")
  record = interval.train_record(sums, {}, steps=2, seconds=4.0, batch_size=16, flops_per_step=1e11, peak=peak)
  assert record["mfu"] == 2 * 1e11 / 4.0 / 1e11 and record["peak_flops"] == 1e11
  assert record["peak_source"] == "a test peak" and record["examples_per_second"] == 8.0
  assert "mfu" not in interval.train_record(sums, {}, steps=2, seconds=4.0, batch_size=16, flops_per_step=1e11,
                                            peak=None)
