"""The transformers' memory controls: activation checkpointing (model.remat) keeps the loss and the gradients
and saves less for the backward pass; the precision policy (model.param_dtype, model.dtype, optimizer.mu_dtype)
puts the dtypes it names in the train state and in the step."""
import functools
import json
import math
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import safetensors
from flax import nnx

from conftest import checkpoint_arrays
from flaxforge.launch.configs import gpt_text
from flaxforge.models import bert, gpt, hf, transformer, vit
from flaxforge.trainer import loop, mesh as mesh_lib, optim, restore, state as state_lib, steps

LM_INFO = {"vocab_size": 256, "seq_len": 32, "task": "lm"}
CLS_INFO = {"vocab_size": 500, "seq_len": 32, "num_classes": 5}


def _tokens(shape, vocab, seed=0):
  return jax.random.randint(jax.random.key(seed), shape, 1, vocab, dtype=jnp.int32)


@functools.cache
def _loss_and_grads(module, items: tuple):
  """The training loss of `module` built from the fields `items` (dropout on: the recomputed blocks must draw
  the same masks) on fixed data, and its gradients, in float32."""
  info = LM_INFO if module is gpt else CLS_INFO
  model = module.from_config({"size": "tiny", "dropout": 0.1, **dict(items)}, info,
                             rngs=nnx.Rngs(params=0, dropout=1))
  tokens = _tokens((4, 32), info["vocab_size"])
  if module is gpt:
    loss = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(tokens)[:, :-1], tokens[:, 1:]).mean()
  else:
    loss = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(tokens), tokens[:, 0] % 5).mean()
  value, grads = nnx.jit(nnx.value_and_grad(loss))(model)
  return float(value), jax.tree.leaves(grads)


@pytest.mark.parametrize("module,cfg,remat", [(gpt, {}, "full"), (gpt, {}, "dots"), (gpt, {}, "offload"),
                                              (bert, {"pool": "cls"}, "full"), (bert, {"pool": "mean"}, "dots")])
def test_every_remat_policy_keeps_the_loss_and_the_gradients(module, cfg, remat):
  """BERT's [CLS] pooling runs its last block for one position (Transformer's output_positions): the remat
  call carries it, and the padding mask, to the block."""
  want_loss, want = _loss_and_grads(module, tuple(sorted({**cfg, "remat": "none"}.items())))
  loss, grads = _loss_and_grads(module, tuple(sorted({**cfg, "remat": remat}.items())))
  assert_same_loss_and_gradients(loss, grads, want_loss, want)


def assert_same_loss_and_gradients(loss, grads, want_loss, want):
  """Equal to round-off: a recomputed or scanned block may be fused unlike the stored, unrolled one."""
  assert loss == pytest.approx(want_loss, rel=1e-6)
  assert len(grads) == len(want) > 10
  for g, w in zip(grads, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-5, atol=1e-6)


def _saved_for_backward(remat, jit=False) -> list:
  """What a 4-layer GPT's forward pass keeps for its backward pass: the leaves of its pullback (jax.vjp), as
  ShapeDtypeStructs, or (jit) as arrays."""
  model = gpt.from_config({"size": "tiny", "num_layers": 4, "remat": remat}, {"vocab_size": 256, "seq_len": 128},
                          rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def pullback(params, rest, tokens):
    return jax.vjp(lambda p, r: nnx.merge(graphdef, p, r)(tokens).sum(), params, rest)[1]
  tokens = jnp.zeros((4, 128), jnp.int32)
  return jax.tree.leaves(jax.jit(pullback)(params, rest, tokens) if jit else
                         jax.eval_shape(pullback, params, rest, tokens))


def test_remat_saves_less_for_the_backward_pass():
  """none > dots > full in bytes kept between the forward and the backward pass, where JAX decides it."""
  size = lambda remat: sum(math.prod(x.shape) * x.dtype.itemsize for x in _saved_for_backward(remat))
  none, dots, full = size("none"), size("dots"), size("full")
  assert none > dots > full


def _compiled_temporaries(remat: str) -> int:
  """temp_size_in_bytes of the train step of a 2-layer GPT (4 x 128 tokens), compiled for the CPU as for an
  accelerator: XLA:CPU alone runs `cse_barrier_expander`, which drops the optimization barriers that keep a
  block's recomputation apart from its forward pass, so that CSE merges the two and every policy compiles to
  the same temporaries; TPU and GPU keep the barriers (BENCHMARKS.md, "Memory controls")."""
  structure, _, mesh = _structure(remat=remat)
  step = steps.make_train_step(structure, mesh, loss_kind="cross_entropy")
  spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype)
  batch = {"inputs": spec((4, 128), jnp.int32), "label": spec((4, 128), jnp.int32), "mask": spec((4,), jnp.float32)}
  lowered = step.lower(structure.abstract, steps.train_metrics_init(mesh), batch)
  compiled = lowered.compile({"xla_disable_hlo_passes": "cse_barrier_expander"})
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.slow  # compiles the train step under each policy
def test_remat_shrinks_the_compiled_train_steps_temporaries():
  none, dots, full = (_compiled_temporaries(remat) for remat in ("none", "dots", "full"))
  assert none > 1.5 * dots and dots > full, (none, dots, full)


def test_offload_keeps_the_saved_matmul_outputs_in_host_memory():
  """'offload' saves what 'dots' saves, in the 'pinned_host' memory space (a CPU has one too, so the policy
  runs here as it would on a TPU or GPU); 'dots' keeps everything on the device."""
  kinds = lambda remat: [x.sharding.memory_kind for x in _saved_for_backward(remat, jit=True)]
  offload, dots = kinds("offload"), kinds("dots")
  assert len(offload) == len(dots)
  assert "pinned_host" in offload and set(dots) == {"device"}


def _structure(param_dtype="float32", dtype="float32", mu_dtype="float32", optimizer="adamw", **model):
  """The train state's Structure (and its create function and the one-device mesh) of a tiny GPT whose
  model fields are `model` besides the precision policy's."""
  c = gpt_text.get_config()
  c.model.size, c.model.param_dtype, c.model.dtype, c.optimizer.mu_dtype = "tiny", param_dtype, dtype, mu_dtype
  c.optimizer.name = optimizer
  for name, value in model.items():
    c.model[name] = value
  mesh = mesh_lib.make_mesh(c.mesh, jax.devices()[:1])
  structure, create = state_lib.structure(c, LM_INFO, mesh, total_steps=10)
  return structure, create, mesh


def _dtypes(tree, part: str) -> set:
  """The dtype names of the leaves of `tree` whose path contains `part` (e.g. "['mu']")."""
  return {x.dtype.name for p, x in jax.tree_util.tree_flatten_with_path(tree)[0] if part in jax.tree_util.keystr(p)}


@pytest.mark.parametrize("param_dtype,mu_dtype", [("float32", "float32"), ("bfloat16", "float32"),
                                                  ("float32", "bfloat16"), ("bfloat16", "bfloat16")])
def test_the_train_state_holds_the_dtypes_the_fields_name(param_dtype, mu_dtype):
  abstract = _structure(param_dtype, "bfloat16", mu_dtype, tie_embeddings=False)[0].abstract
  params = nnx.filter_state(abstract[0], nnx.Param)
  assert {x.dtype.name for x in jax.tree.leaves(params)} == {param_dtype}
  assert _dtypes(abstract[0], "['lm_head']") == {param_dtype}
  assert _dtypes(abstract[1], "['mu']") == {mu_dtype}
  assert _dtypes(abstract[1], "['nu']") == {"float32"}  # optax has no nu_dtype (trainer/optim.py says why)


def test_momentum_keeps_its_trace_in_mu_dtype():
  abstract = _structure("bfloat16", mu_dtype="bfloat16", optimizer="momentum")[0].abstract
  assert _dtypes(abstract[1], "['trace']") == {"bfloat16"}


def test_the_float32_wrapper_adds_nothing_to_the_optimizer_state():
  """trainer/optim.py runs the optimizer on float32 copies: the state has the structure and, for float32
  parameters, the dtypes of the optax optimizer alone, so earlier float32 runs' checkpoints restore as before."""
  params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, mask=lambda p: {"w": True, "b": False}))
  ours, theirs = optim._in_float32(tx).init(params), tx.init(params)  # pylint: disable=protected-access
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  assert [x.dtype for x in jax.tree.leaves(ours)] == [x.dtype for x in jax.tree.leaves(theirs)]


@pytest.mark.parametrize("family", ["gemma", "vit"])
def test_every_parameter_of_the_hugging_face_families_takes_param_dtype(family):
  """Gemma's offset RMSNorms (q/k and sandwich norms included) and ViT's patch embedding and class token
  are parameters of their own: model.param_dtype reaches them too (abstractly: nothing is allocated)."""
  common = dict(num_layers=1, embed_dim=32, num_heads=4, mlp_dim=64, max_len=16, vocab_size=50, padded_vocab=64,
                param_dtype=jnp.dtype("bfloat16"))
  if family == "gemma":
    arch = transformer.Arch(**common, norm="rms", gated_mlp=True, qk_norm=True, norm_offset=1.0, sandwich_norm=True)
    build = lambda: transformer.Transformer(arch, rngs=nnx.Rngs(0))
  else:
    arch = transformer.Arch(**common, patch_size=4, image_size=(8, 8))
    build = lambda: vit.ViT(arch, rngs=nnx.Rngs(0))
  params = jax.tree.leaves(nnx.state(nnx.eval_shape(build), nnx.Param))
  assert len(params) > 10 and {x.dtype.name for x in params} == {"bfloat16"}


def _dot_operand_dtypes(hlo: str) -> list[tuple[str, str]]:
  """(lhs, rhs) element types of every stablehlo.dot_general in the module text."""
  pairs = re.findall(r"stablehlo\.dot_general .*: \(tensor<(?:\d+x)*(\w+)>, tensor<(?:\d+x)*(\w+)>\)", hlo)
  return [(a, b) for a, b in pairs]


@pytest.mark.parametrize("param_dtype,dtype", [("float32", "bfloat16"), ("bfloat16", "float32"),
                                               ("bfloat16", "bfloat16")])
def test_the_step_multiplies_in_the_compute_dtype_and_returns_the_state_in_its_own(param_dtype, dtype):
  """Every matmul of the train step (forward and backward, attention's included) takes `dtype` operands
  whatever the parameters' dtype, and the step hands back each state leaf in the dtype it took."""
  structure, _, mesh = _structure(param_dtype, dtype)
  step = steps.make_train_step(structure, mesh, loss_kind="cross_entropy")
  spec = lambda d: jax.ShapeDtypeStruct((4, 32), d)
  lowered = step.lower(structure.abstract, steps.train_metrics_init(mesh),
                       {"inputs": spec(jnp.int32), "label": spec(jnp.int32), "mask": spec(jnp.float32)})
  dots = _dot_operand_dtypes(lowered.as_text())
  want = {"bfloat16": "bf16", "float32": "f32"}[dtype]
  assert len(dots) > 20 and set(dots) == {(want, want)}, dots
  leaves_in, leaves_out = lowered.in_avals[0][0], lowered.out_info[0]
  assert [x.dtype for x in leaves_out] == [x.dtype for x in leaves_in]
  assert {x.dtype.name for x in leaves_in} >= {param_dtype, "float32"}


def _lm_run(tmp_path, name, **model):
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("the cat sat on the mat. " * 200)
  c = gpt_text.get_config()
  c.data.path, c.data.data_dir, c.data.seq_len = str(corpus), str(tmp_path / "tfds"), 32
  c.model.size = "tiny"
  for field, value in model.items():
    c.model[field] = value
  c.optimizer.warmup_steps, c.optimizer.mu_dtype = 2, "bfloat16"
  c.train.num_steps = c.train.eval_every_steps = 10
  c.train.log_every = c.checkpoint.every_steps = 5
  c.train.progress_bar = False
  workdir = tmp_path / name
  loop.train(c, str(workdir), devices=jax.devices()[:1])
  return workdir


@pytest.mark.slow  # whole training runs
@pytest.mark.parametrize("param_dtype,remat", [("float32", "dots"), ("bfloat16", "full")])
def test_a_bfloat16_compute_run_learns_checkpoints_its_dtypes_and_resumes_bit_exactly(tmp_path, param_dtype, remat):
  """bfloat16 compute with float32 master weights (the usual accelerator choice), or with bfloat16 ones."""
  policy = dict(param_dtype=param_dtype, dtype="bfloat16", remat=remat)
  workdir = _lm_run(tmp_path, "run", **policy)
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  train = [r["loss"] for r in records if r["split"] == "train"]
  assert len(train) == 2 and train[1] < train[0]  # it learns
  run = restore.restore(str(workdir))
  assert {x.dtype.name for x in jax.tree.leaves(nnx.filter_state(run.state[0], nnx.Param))} == {param_dtype}
  assert _dtypes(run.state[1], "['mu']") == {"bfloat16"} and _dtypes(run.state[1], "['nu']") == {"float32"}

  shutil.copytree(workdir, tmp_path / "resumed")
  shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "10")
  _lm_run(tmp_path, "resumed", **policy)  # steps 6-10 again
  (step_a, a), (step_b, b) = checkpoint_arrays(workdir), checkpoint_arrays(tmp_path / "resumed")
  assert step_a == step_b == 10 and len(a) == len(b) and all(x.tobytes() == y.tobytes() for x, y in zip(a, b))


def _sgd_step(accum_steps: int, **model):
  """One SGD step at rate 1 (the update is minus the gradient) of a tiny GPT on 8 x 32 fixed tokens, with
  `accum_steps` micro-batches: (parameters before, parameters after, loss sum)."""
  c = gpt_text.get_config()
  c.model.size, c.optimizer.name, c.optimizer.learning_rate = "tiny", "sgd", 1.0
  c.optimizer.warmup_steps, c.optimizer.grad_clip_norm = 0, 0.0
  for name, value in model.items():
    c.model[name] = value
  mesh = mesh_lib.make_mesh(c.mesh, jax.devices()[:1])
  structure, create = state_lib.structure(c, LM_INFO, mesh, total_steps=10)
  step = steps.make_train_step(structure, mesh, loss_kind="cross_entropy", accum_steps=accum_steps)
  tokens = _tokens((8, 33), LM_INFO["vocab_size"])
  batch = {"inputs": tokens[:, :-1], "label": tokens[:, 1:], "mask": jnp.ones(8, jnp.float32)}
  params = lambda state: [np.array(x, np.float32) for x in jax.tree.leaves(nnx.filter_state(state[0], nnx.Param))]
  before = create()
  start = params(before)
  after, sums = step(before, steps.train_metrics_init(mesh), batch)
  return start, params(after), float(sums["loss_sum"])


@pytest.mark.slow  # compiles two train steps
def test_accumulating_micro_batches_under_remat_and_bfloat16_compute_equals_the_big_batch():
  """4 micro-batches of 2 give the update of one batch of 8 (float32 master weights, bfloat16 compute,
  remat dots: the micro-batch scan carries the remat'd blocks)."""
  policy = dict(dtype="bfloat16", remat="dots")
  start, big, big_loss = _sgd_step(1, **policy)
  _, accumulated, accumulated_loss = _sgd_step(4, **policy)
  assert accumulated_loss == pytest.approx(big_loss, rel=1e-3)
  moved = 0
  for x0, x, y in zip(start, big, accumulated):  # bfloat16 matmuls: each leaf's update agrees to a few %
    want, got = x - x0, y - x0
    assert np.abs(got - want).max() <= 0.1 * np.abs(want).max(), x0.shape
    moved += int(np.abs(want).max() > 1e-3)
  assert moved >= len(start) // 2  # the updates compared are real (a quarter-sized one would be 75% off)


def test_the_hugging_face_export_of_bfloat16_parameters_is_their_exact_float32(tmp_path):
  """export writes float32 (its documented file format, what transformers loads by default): bfloat16 values
  widen exactly, so loading the export gives back the very parameters."""
  model = gpt.from_config({"size": "tiny", "position": "learned", "norm": "layer", "param_dtype": "bfloat16"},
                          LM_INFO, rngs=nnx.Rngs(0))
  out = hf.export(model, str(tmp_path / "hf"))
  with safetensors.safe_open(f"{out}/model.safetensors", "np") as f:
    assert {f.get_tensor(name).dtype.name for name in f.keys()} == {"float32"}
  ours = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  back = dict(nnx.to_flat_state(nnx.state(hf.load(out), nnx.Param)))
  assert back.keys() == ours.keys()
  for key, value in back.items():
    assert value.get_value().dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(value.get_value()), np.asarray(ours[key].get_value(), np.float32))
