"""Host batches to global device arrays, put on the devices ahead of the step that consumes them."""
import collections
from typing import Iterator

import jax
import numpy as np
from jax.sharding import NamedSharding


def to_device(local_batch: dict[str, np.ndarray], sharding: NamedSharding, batch_axis: int = 0) -> dict:
  """Assembles the global batch from each process's rows (`batch_axis` is the split dimension)."""
  def put(x):
    shape = list(x.shape)
    shape[batch_axis] *= jax.process_count()
    return jax.make_array_from_process_local_data(sharding, x, tuple(shape))
  return {k: put(v) for k, v in local_batch.items()}


def stack(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def prefetch(host_iter, sharding: NamedSharding, call_sizes: Iterator[int] | None = None,
             depth: int = 2) -> Iterator:
  """Yields (device_batch, data_state, num_steps) with `depth` calls' batches already transferred.

  Without `call_sizes` each item is one batch. With it, item i stacks the next `call_sizes[i]` batches on
  a new leading axis (several steps per call). `data_state` is the host iterator's position just after the
  item, the one to checkpoint once the item has been trained on.
  """
  queue = collections.deque()

  def fill():
    while len(queue) < depth:
      size = 1 if call_sizes is None else next(call_sizes, 0)
      batches = []
      for _ in range(size):
        try:
          batches.append(next(host_iter))
        except StopIteration:
          break
      if not batches:
        return
      state = host_iter.get_state() if hasattr(host_iter, "get_state") else None
      if call_sizes is None:
        queue.append((to_device(batches[0], sharding), state, 1))
      else:
        queue.append((to_device(stack(batches), sharding, batch_axis=1), state, len(batches)))

  fill()
  while queue:
    item = queue.popleft()
    fill()
    yield item
