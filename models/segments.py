"""Attention masks for packed rows, where several examples share one row and are told apart by segment ids
(data/packing.py: 1, 2, ... per example in a row, 0 on padding).

A query attends to a key only in its own segment, so no example sees another's tokens; with `causal`, only
to keys at its index or before (within a segment, index order is position order). Padding (segment 0)
attends to padding only, which keeps every query's softmax over at least one key (a query with no key
would be NaN); padding's outputs are masked out of the loss. This is MaxText's mask
(`attention_op.py` `generate_attention_mask`: `decoder_segment_ids[:, :, None] == decoder_segment_ids[:,
None, :]`, and causal), in the [B, 1, T, S] layout of `jax.nn.dot_product_attention`'s `mask`.
"""
import jax.numpy as jnp


def attention_mask(segment_ids, kv_segment_ids=None, *, causal: bool = True):
  """segment_ids int [B, T] (the queries') and kv_segment_ids int [B, S] (the keys'; default the same) ->
  bool [B, 1, T, S], True where query t may attend to key s: same segment, and s <= t when causal. The
  singleton axis broadcasts over heads, as `jax.nn.dot_product_attention`'s `mask` takes it."""
  kv_segment_ids = segment_ids if kv_segment_ids is None else kv_segment_ids
  mask = segment_ids[:, :, None] == kv_segment_ids[:, None, :]
  if causal:
    mask = mask & (jnp.arange(segment_ids.shape[1])[:, None] >= jnp.arange(kv_segment_ids.shape[1])[None, :])
  return mask[:, None]
