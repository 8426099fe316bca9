"""Host batches to global device arrays, put on the devices by a background thread ahead of the step.

Reading, stacking and transferring a batch costs the host a fraction of a small model's step; done in the
loop's own thread it would add to every step, so a producer thread does it while the devices compute.
"""
import queue
import threading
from typing import Iterator

import jax
import numpy as np
from jax.sharding import NamedSharding

_END = object()


def to_device(local_batch: dict[str, np.ndarray], sharding: NamedSharding, batch_axis: int = 0) -> dict:
  """Assembles the global batch from each process's rows (`batch_axis` is the split dimension)."""
  if jax.process_count() == 1:
    return jax.device_put(local_batch, sharding)  # one call for all arrays: the cheap single-host path

  def put(x):
    shape = list(x.shape)
    shape[batch_axis] *= jax.process_count()
    return jax.make_array_from_process_local_data(sharding, x, tuple(shape))
  return {k: put(v) for k, v in local_batch.items()}


def stack(batches: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


def _items(host_iter, sharding: NamedSharding, call_sizes: Iterator[int] | None, stacked: NamedSharding | None):
  while True:
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
    if size == 1:
      yield to_device(batches[0], sharding), state, 1
    else:
      yield to_device(stack(batches), stacked, batch_axis=1), state, len(batches)


def prefetch(host_iter, sharding: NamedSharding, call_sizes: Iterator[int] | None = None,
             stacked: NamedSharding | None = None, depth: int = 2) -> Iterator:
  """Yields (device_batch, data_state, num_steps), with up to `depth` items transferred ahead.

  Without `call_sizes` each item is one batch. With it, item i of size > 1 stacks the next `call_sizes[i]`
  batches on a new leading axis, placed with `stacked` (several steps per call); size 1 is a plain batch. `data_state` is the host iterator's position just after the
  item, the one to checkpoint once the item has been trained on. Errors in the producer are raised here.
  """
  items: queue.Queue = queue.Queue(maxsize=depth)
  closed = threading.Event()

  def produce():
    try:
      for item in _items(host_iter, sharding, call_sizes, stacked):
        while not closed.is_set():
          try:
            items.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if closed.is_set():
          return
      items.put(_END)
    except BaseException as e:  # pylint: disable=broad-except  (handed to the consumer)
      items.put(e)

  threading.Thread(target=produce, daemon=True, name="flaxforge-prefetch").start()
  try:
    while True:
      item = items.get()
      if item is _END:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    closed.set()  # the consumer stopped early (time limit, signal, error): let the producer end
