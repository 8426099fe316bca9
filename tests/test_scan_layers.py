"""model.scan_layers: the blocks as one jax.lax.scan keep the loss, the gradients, the dropout streams and the
parameters' layout, compile one block's body whatever the depth, leave decoding with caches as it was, and
refuse blocks that differ in one line."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from test_memory_controls import _loss_and_grads, _tokens, assert_same_loss_and_gradients
from flaxforge.core.errors import UserError
from flaxforge.models import bert, gpt, transformer

LM_INFO = {"vocab_size": 256, "seq_len": 32, "task": "lm"}


@pytest.mark.parametrize("module,cfg", [(gpt, {}), (gpt, {"remat": "full"}), (bert, {"pool": "cls"}),
                                        (bert, {"pool": "mean", "remat": "dots"})])
def test_scan_keeps_the_loss_and_the_gradients(module, cfg):
  """Dropout is on (0.1) in both: each scanned block must draw its own stream's bits, as the loop does. BERT's
  [CLS] pooling runs its last block for one position, outside the scan."""
  want_loss, want = _loss_and_grads(module, tuple(sorted(cfg.items())))
  loss, grads = _loss_and_grads(module, tuple(sorted({**cfg, "scan_layers": True}.items())))
  assert_same_loss_and_gradients(loss, grads, want_loss, want)


def _model(scan, num_layers=2, **fields):
  return gpt.from_config({"size": "tiny", "num_layers": num_layers, "scan_layers": scan, **fields}, LM_INFO,
                         rngs=nnx.Rngs(params=0, dropout=1))


def test_scan_advances_each_blocks_dropout_stream_as_the_loop_does():
  """Two training forwards: the second step's masks depend on the counts the first left in the state."""
  tokens = _tokens((2, 32), 256)
  outputs, streams = [], []
  for scan in (False, True):
    model = _model(scan, dropout=0.1)
    outputs.append([np.asarray(model(tokens)) for _ in range(2)])
    streams.append(jax.tree.leaves(nnx.state(model, nnx.RngState)))
  np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-6, atol=1e-6)
  assert not np.allclose(outputs[0][0], outputs[0][1])  # the second forward drew other masks
  assert len(streams[0]) == len(streams[1]) > 4
  for scanned, looped in zip(streams[1], streams[0]):
    np.testing.assert_array_equal(jax.random.key_data(scanned) if jnp.issubdtype(scanned.dtype, jax.dtypes.prng_key)
                                  else scanned, jax.random.key_data(looped)
                                  if jnp.issubdtype(looped.dtype, jax.dtypes.prng_key) else looped)


def test_scan_keeps_one_parameter_entry_per_block():
  """Checkpoints and the Hugging Face converters read these paths: scanning changes none of them."""
  shapes = lambda model: {path: x.shape for path, x in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  assert shapes(_model(True)) == shapes(_model(False))
  assert any(path[:2] == ("transformer", "blocks") and path[2] == 1 for path in shapes(_model(True)))


def _compiled_ops(scan: bool, num_layers: int) -> int:
  """Instructions in the optimised HLO of a training step's gradient for a GPT of `num_layers` blocks."""
  graphdef, params, rest = nnx.split(_model(scan, num_layers), nnx.Param, ...)
  tokens = _tokens((2, 32), 256)
  loss = lambda p, r: nnx.merge(graphdef, p, r)(tokens).mean()
  text = jax.jit(jax.grad(loss)).lower(params, rest).compile().as_text()
  return len(re.findall(r"^\s+\S+ = ", text, flags=re.M))


def test_scan_compiles_one_block_body_whatever_the_depth():
  """Unrolled, the program grows with every block; scanned, 8 blocks compile to about what 2 do (the stack
  and unstack of each parameter grow, the body does not)."""
  unrolled = _compiled_ops(False, 2), _compiled_ops(False, 8)
  scanned = _compiled_ops(True, 2), _compiled_ops(True, 8)
  assert unrolled[1] > 2.5 * unrolled[0]
  assert scanned[1] < 1.6 * scanned[0]
  assert scanned[1] < unrolled[1] / 2


def test_decoding_with_caches_runs_the_blocks_unrolled_and_unchanged():
  """Generation writes each block's cache: the scan applies to forward passes without caches only."""
  prompt = _tokens((1, 6), 256)
  results = []
  for scan in (False, True):
    model = _model(scan)
    model.eval()
    cache = model.init_cache(1, 16)
    logits, cache = model.decode(prompt, cache, 0)
    results.append((np.asarray(logits), np.asarray(model(prompt))))
  np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(results[1][1], results[0][0], rtol=1e-5, atol=1e-5)


def test_blocks_that_differ_are_refused_in_one_line():
  """Gemma-style alternating windows make the blocks' structures differ: no single body can run them."""
  arch = transformer.Arch(num_layers=2, embed_dim=32, num_heads=2, mlp_dim=64, max_len=32, vocab_size=256,
                          padded_vocab=256, windows=(4, 0), scan_layers=True)
  model = transformer.Transformer(arch, rngs=nnx.Rngs(0))
  with pytest.raises(UserError, match=r"model.scan_layers needs blocks alike .* block 1 differs") as error:
    model(_tokens((1, 8), 256), jnp.arange(8))
  assert "\n" not in str(error.value)
