"""Host batches to global device arrays, put on the devices by a background thread ahead of the step.

Reading, stacking and transferring a batch costs the host a fraction of a small model's step; done in the
loop's own thread it would add to every step, so a producer thread does it while the devices compute.
"""
import queue
import threading
from typing import Iterator

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from flaxforge.data import pipeline
from flaxforge.core.errors import UserError

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


def resident(rows, transform, mesh, setting, limit_bytes: int = 256 << 20) -> dict | None:
  """The training split on the devices (replicated), for steps that gather their own batches there: on a
  2-core CPU, reading, handing over and transferring every text CNN batch took 15% of the step's time
  from XLA. `setting` (config.data.on_device): "auto" = when one process holds the split in memory and
  it is under `limit_bytes` after `transform`; "yes"; "no". None = the host feeds whole batches."""
  if setting not in ("auto", "yes", "no"):
    raise UserError(f"data.on_device must be 'auto', 'yes' or 'no', not {setting!r}")
  fits = jax.process_count() == 1 and rows.in_memory
  if setting == "yes" and not fits:
    raise UserError("data.on_device=yes needs a single process and data.in_memory=True; use 'auto'")
  if setting == "no" or not fits:
    return None
  arrays = rows.arrays()
  arrays = transform(arrays) if transform else arrays
  if setting == "auto" and sum(v.nbytes for v in arrays.values()) > limit_bytes:
    return None
  return jax.device_put(arrays, NamedSharding(mesh, P()))


def resident_positions(num_rows: int, global_batch: int, seed: int, start: int, call_sizes: Iterator[int],
                       sharding: NamedSharding):
  """For steps over a resident split: yields (position, data_state, num_steps) per call, where position
  holds the call's step number(s) and the row orders (data/pipeline.py `epoch_order`) of the epochs those
  steps reach, put on the devices once per epoch. data_state is what the Grain iterator of the host path
  would report, so a run resumes on either path. Per step the host sends nothing but the step number.
  `sharding`: replicated over the mesh."""
  k, placed, orders = start, None, None
  for size in call_sizes:
    first = k * global_batch // num_rows
    count = size * global_batch // num_rows + 2  # covers every epoch the call reaches; fixed per call size
    if placed != (first, count):
      orders = jax.device_put(np.stack([pipeline.epoch_order(num_rows, seed, e)
                                        for e in range(first, first + count)]).astype(np.int32), sharding)
      placed = (first, count)
    steps = np.int32(k) if size == 1 else np.arange(k, k + size, dtype=np.int32)
    k += size
    yield {"step": steps, "first_epoch": np.int32(first), "orders": orders}, {"next_index": k}, size


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
  batches on a new leading axis, placed with `stacked` (several steps per call); size 1 is a plain batch.
  `data_state` is the host iterator's position just after the item, the one to checkpoint once the item
  has been trained on. Errors in the producer are raised here.
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
