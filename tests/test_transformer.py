"""BERT and GPT on CPU: shapes, parameter counts, masking, the KV cache (and the sampler on it), bf16, dropout
modes, sharding."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from flaxforge.core.errors import UserError
from flaxforge.models import bert, gpt, transformer
from flaxforge.models.attention import attention_per_head
from flaxforge.models.dropout import Dropout
from flaxforge.models.fields import PRESETS
from flaxforge.inference import sampling
from test_sampling_prefill import BYTES, greedy

LM_INFO = {"vocab_size": 256, "seq_len": 32}
CLS_INFO = {"vocab_size": 500, "seq_len": 16, "num_classes": 5}


@functools.cache
def _build(module, items):
  info = LM_INFO if module is gpt else CLS_INFO
  return module.from_config({"size": "tiny", **dict(items)}, info, rngs=nnx.Rngs(params=0, dropout=1))


# Built once per config and shared (so compiled once); only the dropout test changes a model's mode.
def make_gpt(**cfg):
  return _build(gpt, tuple(sorted(cfg.items())))


def make_bert(**cfg):
  return _build(bert, tuple(sorted(cfg.items())))


# Jitted calls: eager op-by-op execution of these models is several times slower on CPU.
forward = nnx.jit(lambda model, x: model(x))
decode = nnx.jit(lambda model, x, cache, index: model.decode(x, cache, index))


def tokens(shape, vocab, seed=0, low=1):
  return jax.random.randint(jax.random.key(seed), shape, low, vocab, dtype=jnp.int32)


def n_params(module_fn):
  return sum(x.size for x in jax.tree.leaves(nnx.state(nnx.eval_shape(module_fn), nnx.Param)))


def test_output_shapes_and_dtypes():
  x = tokens((3, 16), 256)
  out = forward(make_gpt(), x)
  assert out.shape == (3, 16, 256) and out.dtype == jnp.float32
  out = forward(make_bert(), x)
  assert out.shape == (3, 5) and out.dtype == jnp.float32


def test_explicit_fields_override_preset():
  cfg = {"size": "tiny", "num_layers": 3, "embed_dim": 32, "num_heads": 4, "mlp_dim": 0}
  model = nnx.eval_shape(lambda: gpt.from_config(cfg, LM_INFO, rngs=nnx.Rngs(0)))
  assert (model.arch.num_layers, model.arch.embed_dim, model.arch.num_heads, model.arch.mlp_dim) == (3, 32, 4, 256)
  with pytest.raises(UserError):
    gpt.from_config({"size": "huge"}, LM_INFO, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("size", list(PRESETS))
def test_preset_parameter_counts(size):
  layers, d, _, m = PRESETS[size]
  # Defaults: LayerNorm, biases, rope (no position table), tied embeddings, vocab 50257 padded to 50304 rows.
  # Per layer: q, k, v, out 4d^2 + 4d; MLP 2dm + m + d; two LayerNorms 4d. Then embedding and final norm 2d.
  # (125m: 12 * 7,087,872 + 50304 * 768 + 1,536 = 123,689,472.)
  expected = layers * (4 * d * d + 2 * d * m + 9 * d + m) + 50304 * d + 2 * d
  info = {"vocab_size": 50257, "seq_len": 1024}
  assert n_params(lambda: gpt.from_config({"size": size}, info, rngs=nnx.Rngs(0))) == expected


def test_flop_count_follows_gqa_and_gated_mlp():
  # Forward matmul FLOPs = 2 x the kernels' weights (the LM head included), attention scores aside.
  model = make_gpt(**LLAMA)
  kernels = sum(x.size for path, x in nnx.to_flat_state(nnx.state(model, nnx.Param)) if path[-1] == "kernel")
  a = model.arch
  per_token = transformer.transformer_flops_per_token(a.num_layers, a.embed_dim, a.mlp_dim, 0, a.padded_vocab,
                                                      training=False, **a.flops_shape())
  assert per_token == 2 * kernels


def test_125m_matches_gpt2_small():
  # 12 x 768, LayerNorm with bias, biases everywhere, learned positions (1024), tied unpadded embeddings.
  # Per layer: attention 4*768^2 + 4*768, MLP 2*768*3072 + 3072 + 768, two LayerNorms 4*768 = 7,087,872;
  # x12 = 85,054,464, + tokens 50257*768 = 38,597,376 + positions 1024*768 = 786,432 + final norm 1,536.
  cfg = {"size": "125m", "position": "learned", "vocab_multiple": 1}
  info = {"vocab_size": 50257, "seq_len": 1024}
  assert n_params(lambda: gpt.from_config(cfg, info, rngs=nnx.Rngs(0))) == 124_439_808


# The defaults (rope, LayerNorm, biases, tied embeddings), every alternative at once, and Llama's shape
# (grouped-query attention with one key/value head for two query heads, SwiGLU).
LLAMA = {"norm": "rms", "use_bias": False, "tie_embeddings": False, "num_kv_heads": 1, "gated_mlp": True,
         "mlp_activation": "silu"}
VARIANTS = [{}, {"position": "learned", "norm": "rms", "use_bias": False, "tie_embeddings": False}, LLAMA]


@pytest.mark.parametrize("cfg", VARIANTS)
def test_gpt_is_causal(cfg):
  model = make_gpt(**cfg)
  x = tokens((2, 12), 256)
  y = x.at[:, 7].set((x[:, 7] + 1) % 256)
  a, b = forward(model, x), forward(model, y)
  np.testing.assert_array_equal(a[:, :7], b[:, :7])  # the past cannot see the change
  assert not np.allclose(a[:, 7:], b[:, 7:])


@pytest.mark.parametrize("kv_heads", [4, 2])
@pytest.mark.parametrize("masks", [dict(), dict(mask="padding"), dict(is_causal=True),
                                   dict(mask="padding", is_causal=True)])
def test_cpu_attention_per_head_equals_library(masks, kv_heads):
  # The CPU path (one head at a time) must be jax.nn.dot_product_attention's math, values and gradients,
  # also with fewer key/value heads than query heads.
  q = jax.random.normal(jax.random.key(0), (3, 16, 4, 8))
  k, v = (jax.random.normal(jax.random.key(i), (3, 16, kv_heads, 8)) for i in (1, 2))
  if masks.get("mask"):
    lengths = jnp.array([16, 9, 3])
    masks = dict(masks, mask=(jnp.arange(16)[None, :] < lengths[:, None])[:, None, None, :])
  loss = lambda f: lambda q, k, v: jnp.sum(jnp.sin(f(q, k, v, **masks)))
  want = jax.value_and_grad(loss(jax.nn.dot_product_attention), argnums=(0, 1, 2))(q, k, v)
  got = jax.value_and_grad(loss(attention_per_head), argnums=(0, 1, 2))(q, k, v)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_bert_ignores_trailing_padding(pool):
  # Real tokens keep their positions and padding is masked as a key, so how much padding follows the text
  # must not change the prediction; a real token in the padded slot must.
  model = make_bert(pool=pool)
  text = tokens((2, 6), 500)
  short = jnp.pad(text, ((0, 0), (0, 2)))
  long = jnp.pad(text, ((0, 0), (0, 10)))
  np.testing.assert_allclose(forward(model, short), forward(model, long), atol=1e-5)
  assert not np.allclose(forward(model, short), forward(model, short.at[:, 7].set(3)), atol=1e-5)


causal_hidden = nnx.jit(lambda model, x: model.transformer(x, jnp.arange(x.shape[1]), is_causal=True)[0])
masked_hidden = nnx.jit(lambda model, x: model.transformer(x, jnp.arange(x.shape[1]),
                                                           mask=(x != 0)[:, None, None, :])[0])


@pytest.mark.parametrize("cfg", [{"pool": "cls"}] + [dict(v, decoder=True) for v in VARIANTS])
def test_pooled_classifier_equals_pooling_the_full_output(cfg):
  # A pooled classifier's last block runs only the pooled position's query (Transformer's output_positions):
  # its logits must equal the head applied to that position of the whole last layer's output. Decoders
  # pool each row's last real token, so the rows carry different amounts of right padding.
  cfg = dict(cfg)
  if cfg.pop("decoder", False):
    cfg = {k: v for k, v in cfg.items() if k != "tie_embeddings"}
    model = gpt.from_config({"size": "tiny", **cfg}, {**CLS_INFO, "task": "classification"},
                            rngs=nnx.Rngs(params=0, dropout=1))
    x = tokens((3, 16), 500).at[0, 9:].set(0).at[1, 3:].set(0)
    h = causal_hidden(model, x)[jnp.arange(3), jnp.array([8, 2, 15])]
  else:
    model = make_bert(**cfg)
    x = tokens((3, 16), 500).at[0, 9:].set(0)
    h = masked_hidden(model, x)[:, 0]
  expected = model.head(h.astype(jnp.float32))
  np.testing.assert_allclose(forward(model, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # generation, compiled per variant
@pytest.mark.parametrize("cfg", VARIANTS)
def test_decode_with_cache_matches_full_forward(cfg):
  model = make_gpt(**cfg)
  x = tokens((2, 10), 256)
  full = forward(model, x)
  cache = model.init_cache(2, 10)
  logits, cache = decode(model, x[:, :4], cache, 0)  # prefill
  steps = [logits]
  for t in range(4, 10):
    logits, cache = decode(model, x[:, t:t + 1], cache, jnp.int32(t))
    steps.append(logits)
  np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # generation
def test_greedy_sampling_with_the_cache_matches_an_uncached_loop():
  model = make_gpt()
  prompt = tokens((5,), 256).tolist()
  sampler = sampling.Sampler(model, BYTES, max_context=LM_INFO["seq_len"])
  got = sampler.sample(prompt, 12, num_samples=2, temperature=0, stop_at_eos=False)
  assert got == [greedy(model, prompt, 12, length=LM_INFO["seq_len"])] * 2


def _ranks(model, out, prompt_len):
  """Rank of each generated token among the model's logits at its position (0 = most likely): [B, new]."""
  logits = np.asarray(forward(model, out[:, :-1]))[:, prompt_len - 1:]
  chosen = np.take_along_axis(logits, np.asarray(out[:, prompt_len:])[..., None], -1)
  return (logits > chosen).sum(-1)


@pytest.mark.slow  # generation
def test_sampling_is_seeded_and_top_k_restricts_it():
  """A hot temperature over an untrained model's flat logits: without top_k most draws fall outside the
  top 3, with top_k=3 none may."""
  model = make_gpt()
  prompt = tokens((5,), 256).tolist()
  sampler = sampling.Sampler(model, BYTES, max_context=LM_INFO["seq_len"])
  draw = lambda top_k: jnp.asarray([prompt + row for row in sampler.sample(
      prompt, 8, num_samples=16, temperature=3.0, top_k=top_k, seed=1, stop_at_eos=False)])
  a, b = draw(3), draw(3)
  np.testing.assert_array_equal(a, b)
  assert _ranks(model, a, 5).max() < 3
  free = draw(0)
  assert (_ranks(model, free, 5) >= 3).mean() > 0.5


def test_bfloat16_compute_float32_params_and_logits():
  x = tokens((2, 16), 256)
  f32, bf16 = make_gpt(), make_gpt(dtype="bfloat16")
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(bf16, nnx.Param)))
  a, b = forward(f32, x), forward(bf16, x)  # same seed, so the same parameters
  assert b.dtype == jnp.float32 and bool(jnp.isfinite(b).all())
  assert 0 < float(jnp.abs(a - b).max()) < 0.05  # rounded, but the same function
  assert forward(make_bert(dtype="bfloat16"), x).dtype == jnp.float32


def test_dropout_follows_train_and_eval():
  model = make_bert(dropout=0.3)
  x = tokens((2, 16), 500)
  model.eval()
  np.testing.assert_array_equal(forward(model, x), forward(model, x))
  model.train()
  assert not np.allclose(forward(model, x), forward(model, x))


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_16_bit_dropout_keeps_the_rate_and_the_mean(rate):
  layer = Dropout(rate, rngs=nnx.Rngs(dropout=0))
  x = jnp.linspace(0.5, 1.5, 64 * 1024).reshape(64, 1024)
  a, b = layer(x), layer(x)
  kept = np.asarray(a != 0)
  assert abs(kept.mean() - (1 - rate)) < 0.005  # fixed seed; 65,536 draws: 2.6 (rate 0.5) to 4.3 (0.1) sigma
  np.testing.assert_allclose(np.asarray(a)[kept], (np.asarray(x) / (1 - rate))[kept], rtol=1e-4)
  assert abs(float(a.sum() / x.sum()) - 1) < 0.01  # the mean is kept
  assert not np.array_equal(kept, np.asarray(b != 0))  # a fresh mask per call
  kept_2d = kept.reshape(-1, 2)  # the two halves of a 32-bit draw are not tied together
  assert abs((kept_2d[:, 0] & kept_2d[:, 1]).mean() - (1 - rate) ** 2) < 0.005
  layer.eval()
  np.testing.assert_array_equal(layer(x), x)


@pytest.mark.slow  # 8 devices
@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (fake) devices")
@pytest.mark.parametrize("make", [make_gpt, make_bert])
def test_fsdp_tensor_sharded_forward_matches_single_device(make):
  from flaxforge.trainer.mesh import RULES
  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3)
  model = make()
  graphdef, state = nnx.split(model)
  with nnx.logical_axis_rules(RULES):
    specs = nnx.get_partition_spec(state)
  shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=lambda s: isinstance(s, P))
  sharded = jax.device_put(state, shardings)
  kernel = sharded["transformer"]["blocks"][0]["mlp"]["up"]["kernel"]
  assert kernel[...].sharding.spec == P("fsdp", "tensor")
  x = tokens((8, 16), 256)
  with jax.set_mesh(mesh):
    out = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(sharded, jax.device_put(x, P(("data", "fsdp"))))
  np.testing.assert_allclose(out, forward(model, x), atol=1e-5)
