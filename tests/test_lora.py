"""LoRA (model.lora.rank): a training step changes only the adapters and the new head, the optimizer state
covers only those, and merging folds the adapters into the kernels without changing the function."""
import shutil

import jax
import numpy as np
import pytest
from flax import nnx

import tiny_hf
from tiny_hf import bert_dir, topics  # pylint: disable=unused-import (fixtures)
from conftest import checkpoint_arrays
from flaxforge.core.errors import UserError
from flaxforge.models import hf, lora
from flaxforge.trainer import loop, mesh as mesh_lib, restore, run_data, state as state_lib, workdir as workdir_lib

LORA = {"model.lora.rank": 4, "model.lora.targets": "qkv,out,up", "model.dropout": 0.0}


def _flat(state):
  """{path: array} of the parameters in a model's state."""
  state = nnx.filter_state(state, nnx.Param)
  return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(state)[0]}


@pytest.mark.slow  # a whole fine-tune
def test_a_lora_step_changes_only_adapters_and_head(tmp_path, bert_dir, topics):
  config = tiny_hf.config(tmp_path, bert_dir, topics, **LORA, **{"train.num_steps": 2,
                                                                 "checkpoint.every_steps": 1})
  data = run_data.load_data(config)
  _, create = state_lib.structure(config, data.info, mesh_lib.mesh_for(config.mesh), total_steps=2)
  before = _flat(create()[0])
  loop.train(config, str(tmp_path / "run"))
  run_state = restore.restore(str(tmp_path / "run")).state
  after = _flat(run_state[0])
  changed = {k for k in before if not np.array_equal(before[k], after[k])}
  assert changed and all("lora_" in k or "'head'" in k for k in changed), changed
  assert any("lora_b" in k for k in changed) and any("'head'" in k for k in changed)
  opt_arrays = [x for x in jax.tree.leaves(run_state[1]) if x.ndim >= 1]
  full = sum(x.size for k, x in before.items() if "lora_" not in k)
  trained = sum(x.size for k, x in before.items() if "lora_" in k or "'head'" in k)
  assert sum(x.size for x in opt_arrays) == 2 * trained < 0.5 * full  # Adam's two moments, adapters and head only
  structure, _ = state_lib.structure(config, data.info, mesh_lib.mesh_for(config.mesh), total_steps=2)
  total = sum(x.size for x in before.values())
  banner = state_lib.parameters_line(config.model, structure.abstract)
  assert banner == f"{total:,} parameters ({trained:,} trained: LoRA rank 4)", banner


def test_merge_keeps_the_function():
  layer = nnx.LinearGeneral(8, (3, 2, 4), rngs=nnx.Rngs(0))
  cfg = {"lora": {"rank": 2, "alpha": 4.0, "targets": "layer"}}

  class Holder(nnx.Module):
    def __init__(self):
      self.layer = layer

  holder = lora.apply(Holder(), _Cfg(cfg), rngs=nnx.Rngs(1))
  holder.layer.lora_b[...] = jax.random.normal(jax.random.key(2), holder.layer.lora_b[...].shape)
  x = jax.random.normal(jax.random.key(3), (5, 8))
  adapted = np.asarray(holder.layer(x))
  kernel = np.asarray(holder.layer.kernel[...])
  lora.merged(holder)
  assert not np.allclose(kernel, np.asarray(holder.layer.kernel[...]))
  plain = nnx.LinearGeneral(8, (3, 2, 4), rngs=nnx.Rngs(0))
  plain.kernel[...] = holder.layer.kernel[...]
  np.testing.assert_allclose(np.asarray(plain(x)), adapted, atol=1e-5)


class _Cfg(dict):
  """A dict that answers `.lora.rank` as a ConfigDict does."""

  def __getattr__(self, name):
    value = self[name]
    return _Cfg(value) if isinstance(value, dict) else value


@pytest.mark.slow  # whole fine-tunes
@pytest.mark.parametrize("param_dtype", ["float32", "bfloat16"])
def test_checkpoints_reference_the_frozen_base_and_resume_exactly(tmp_path, bert_dir, topics, param_dtype):
  """A LoRA step's checkpoint holds adapters, head and optimizer only; its meta names the base (path,
  sha256), a resume reads the base again and redoes the steps bit for bit, and a changed base is refused.
  A bfloat16 base (model.param_dtype) keeps float32 adapters and head, and resumes as exactly."""
  base = tmp_path / "base"
  shutil.copytree(bert_dir, base)
  config = tiny_hf.config(tmp_path, base, topics, **LORA, **{"train.num_steps": 10, "checkpoint.every_steps": 5,
                                                            "model.param_dtype": param_dtype})
  loop.train(config, str(tmp_path / "run"))
  ckpt = workdir_lib.checkpointer(tmp_path / "run", config, read_only=True)
  assert ckpt.meta(10)["frozen_base"] == {"path": str(base), "sha256": hf.content_hash(str(base))}
  saved = [jax.tree_util.keystr(p) for p, _ in
           jax.tree_util.tree_flatten_with_path(ckpt._manager.item_metadata(10)["state"])[0]]  # pylint: disable=protected-access
  kernels = [n for n in saved if n.startswith("['0']") and ("kernel" in n or "embedding" in n)]
  assert kernels and all("head" in n for n in kernels), kernels  # no base kernel or embedding is stored
  assert any("lora_a" in n for n in saved)

  shutil.copytree(tmp_path / "run", tmp_path / "resumed")
  shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "10")
  loop.train(config, str(tmp_path / "resumed"))  # from step 5: the base read again, steps 6-10 redone
  (step_a, a), (step_b, b) = checkpoint_arrays(tmp_path / "run"), checkpoint_arrays(tmp_path / "resumed")
  assert step_a == step_b == 10 and len(a) == len(b) and all(x.tobytes() == y.tobytes() for x, y in zip(a, b))
  dtypes = {k: v.dtype.name for k, v in _flat(restore.restore(str(tmp_path / "resumed")).state[0]).items()}
  assert {d for k, d in dtypes.items() if "lora_" in k or "'head'" in k} == {"float32"}
  assert {d for k, d in dtypes.items() if "kernel" in k and "'head'" not in k} == {param_dtype}

  weights = base / "model.safetensors"
  data = bytearray(weights.read_bytes())
  data[-8] ^= 0x40  # inside the last tensor: still a valid file, other weights
  weights.write_bytes(bytes(data))
  with pytest.raises(UserError, match=r"base weights in .*base changed since this run was saved"):
    restore.restore(str(tmp_path / "run"))


@pytest.mark.parametrize("kv_heads,layers", [(0, {"qkv", "out"}), (2, {"q", "kv", "out"})])
def test_the_default_targets_adapt_attention_with_or_without_grouped_query_heads(kv_heads, layers):
  """"qkv,out" (the config's default) is one fused qkv layer, or q and kv under grouped-query attention."""
  from flaxforge.models import gpt  # pylint: disable=g-import-not-at-top
  cfg = {"name": "gpt", "size": "tiny", "embed_dim": 32, "num_layers": 1, "num_heads": 4, "num_kv_heads": kv_heads,
         "lora": {"rank": 2, "alpha": 4.0, "targets": "qkv,out"}}
  model = lora.apply(gpt.from_config(_Cfg(cfg), {"task": "lm", "vocab_size": 64, "seq_len": 8}, rngs=nnx.Rngs(0)),
                     _Cfg(cfg), rngs=nnx.Rngs(1))
  adapted = {path[-1] for path, layer in nnx.iter_graph(model) if hasattr(layer, "lora_a")}
  assert adapted == layers
  missing = "gate" if kv_heads else "q"  # no gated MLP; q only under grouped-query attention
  with pytest.raises(UserError, match=f"names no dense layer: {missing}; use attention's qkv"):
    lora.apply(gpt.from_config(_Cfg(cfg), {"task": "lm", "vocab_size": 64, "seq_len": 8}, rngs=nnx.Rngs(0)),
               _Cfg({**cfg, "lora": {**cfg["lora"], "targets": f"out,{missing}"}}),
               rngs=nnx.Rngs(1))
