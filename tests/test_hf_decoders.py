"""The decoder families' own parts beyond parity (test_hf_models.py): a config.json value a family cannot
honour is refused in one line naming it and the families flaxforge converts; Gemma's soft-capped attention
has autodiff's gradients; a decoder classifier's pooled position sees its window; and fine-tuning Mistral,
Qwen3, Gemma 2 and 3 on an FSDP x tensor mesh of 8 devices gives one device's losses."""
import dataclasses
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position
from flax import nnx  # pylint: disable=wrong-import-position

import csv_run  # pylint: disable=wrong-import-position
import tiny_hf  # pylint: disable=wrong-import-position
from flaxforge.core.errors import UserError  # pylint: disable=wrong-import-position
from flaxforge.launch.configs import finetune_lm  # pylint: disable=wrong-import-position
from flaxforge.models import attention, hf, transformer  # pylint: disable=wrong-import-position
from flaxforge.trainer import loop  # pylint: disable=wrong-import-position

FAMILIES = "bert, gpt2, llama, mistral, qwen2, qwen3, gemma2, gemma3_text, roberta, xlm-roberta, distilbert, vit"
YARN = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0}


@pytest.mark.parametrize("family,change,field", [
    ("llama", {"rope_parameters": YARN}, "rope_parameters.rope_type 'yarn' is not supported (flaxforge computes "
                                         "default, linear, llama3)"),
    ("gemma3", {"rope_parameters": {"full_attention": YARN, "sliding_attention": {"rope_type": "default"}}},
     "rope_parameters.rope_type 'yarn'"),
    ("qwen3", {"rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}},
     "rope_parameters.partial_rotary_factor is not supported"),
    ("mistral", {"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported for mistral"),
    ("gemma2", {"use_bidirectional_attention": True}, "use_bidirectional_attention=true is not supported"),
    ("gemma2", {"hidden_activation": "relu"}, "hidden_activation 'relu' is not supported for gemma2"),
    ("qwen3", {"attention_bias": True}, "attention_bias=true is not supported for qwen3"),
    ("gemma3", {"model_type": "gemma3"}, "model_type 'gemma3' is not supported; use one of: "),
])
def test_what_a_family_cannot_honour_is_refused_in_one_line(tmp_path, family, change, field):
  config = {**tiny_hf.DECODERS[family](vocab_size=99).config.to_dict(), **change}
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(UserError) as refused:
    hf.read_config(str(tmp_path))
  message = str(refused.value)
  assert "\n" not in message and field in message and message.endswith(FAMILIES), message


@pytest.mark.slow  # gradients through two attention implementations
def test_soft_capped_attention_has_autodiffs_gradients():
  # The CPU kernel's own backward (FlashAttention's, times the cap's 1 - tanh^2) against JAX's autodiff of
  # the plain maths, with grouped-query heads, a query scale of Gemma's kind and a padding mask.
  q, k, v = (jax.random.normal(jax.random.key(i), shape) * 2 for i, shape in
             enumerate([(2, 6, 4, 8), (2, 6, 2, 8), (2, 6, 2, 8)]))
  mask = jnp.arange(6)[None, None, None, :] < jnp.array([6, 4])[:, None, None, None]
  kw = dict(mask=mask, is_causal=True, scale=0.3, softcap=2.0)
  loss = lambda f: lambda *qkv: jnp.sum(jnp.sin(f(*qkv, **kw)))
  got = jax.value_and_grad(loss(attention.attention_per_head), argnums=(0, 1, 2))(q, k, v)
  want = jax.value_and_grad(loss(attention.attention_all_heads), argnums=(0, 1, 2))(q, k, v)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  # and the cap matters: without it the values differ
  uncapped = attention.attention_all_heads(q, k, v, **{**kw, "softcap": 0.0})
  assert np.abs(uncapped - attention.attention_per_head(q, k, v, **kw)).max() > 1e-2


def _losses(workdir):
  with open(f"{workdir}/metrics.jsonl") as f:
    return [r["loss"] for r in map(json.loads, f) if r.get("split") == "train"]


@pytest.mark.slow  # whole fine-tunes
@pytest.mark.parametrize("family", ["mistral", "qwen3", "gemma2", "gemma3"])
def test_eight_devices_fine_tune_as_one_does(tmp_path, family):
  lines = [" ".join(t.split()) for t in csv_run.TOPICS.values()] * 40
  corpus = tmp_path / "corpus.txt"
  corpus.write_text("\n".join(lines))
  base = tiny_hf.save_decoder(tmp_path / family, lines, family)
  run = {"data.batch_size": 8, "train.num_steps": 4, "train.eval_every_steps": 4, "train.log_every": 1}
  one = tiny_hf.config(tmp_path, base, corpus, base=finetune_lm, **run)
  loop.train(one, str(tmp_path / "one"), devices=jax.devices()[:1])
  eight = tiny_hf.config(tmp_path, base, corpus, base=finetune_lm, **run,
                         **{"mesh.data": 1, "mesh.fsdp": 4, "mesh.tensor": 2})
  loop.train(eight, str(tmp_path / "eight"))
  assert len(_losses(tmp_path / "one")) == 4
  np.testing.assert_allclose(_losses(tmp_path / "eight"), _losses(tmp_path / "one"), rtol=1e-4)


@pytest.mark.slow  # compiles a windowed model twice
def test_a_pooled_position_sees_the_same_window_as_the_whole_sequence():
  # A decoder classifier's last block computes only each row's last real token (output_positions); its
  # window and soft-cap must be those of the full forward pass at that position.
  arch = transformer.Arch(num_layers=2, embed_dim=32, num_heads=4, mlp_dim=64, max_len=16, vocab_size=50,
                          padded_vocab=128, norm="rms", num_kv_heads=2, gated_mlp=True, head_size=16, qk_norm=True,
                          norm_offset=1.0, sandwich_norm=True, embed_scale=True, attn_scale=0.2, attn_softcap=2.0,
                          windows=(3, 3), local_rope_base=100.0)
  body = transformer.Transformer(arch, rngs=nnx.Rngs(0))
  nnx.update(body, jax.tree.map(lambda p: p * 10, nnx.state(body, nnx.Param)))
  tokens = jnp.asarray(np.random.default_rng(0).integers(1, 50, (2, 12)), jnp.int32)
  last = jnp.array([[11], [7]])
  positions = jnp.arange(12)
  whole, _ = body(tokens, positions, is_causal=True)
  pooled, _ = body(tokens, positions, is_causal=True, output_positions=last)
  np.testing.assert_allclose(pooled[:, 0], jnp.take_along_axis(whole, last[:, :, None], axis=1)[:, 0], atol=1e-5)
  wide = transformer.Transformer(dataclasses.replace(arch, windows=(50, 50)), rngs=nnx.Rngs(0))
  nnx.update(wide, nnx.state(body, nnx.Param))
  seen_all, _ = wide(tokens, positions, is_causal=True, output_positions=last)
  assert np.abs(seen_all - pooled).max() > 1e-3  # the window matters at these positions
