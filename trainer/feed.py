"""The loop's one data door (`batches`): the training split as the train step's inputs, call by call; how
many steps the batch size makes (`plan`) and how many of them each call runs (`call_sizes`).

Two paths, one contract (`Feed`): a split small enough stays on the devices and the step gathers its own
rows; anything else is read by a Grain pipeline, and a background thread puts each process's rows on the
devices ahead of the step (reading, stacking and transferring a batch in the loop's own thread would add
to every step). Both pick rows by the one rule in data/pipeline.py `rows_at`, so they train identically.
"""
import dataclasses
import itertools
import queue
import threading
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from flaxforge.core.errors import UserError
from flaxforge.data import fields as data_fields, packing as data_packing, pipeline
from flaxforge.trainer import fields
from flaxforge.trainer import mesh as mesh_lib

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


@dataclasses.dataclass
class Feed:
  """What the loop trains on, whichever path the rows take (see `batches`).

  `items` yields `(batch, shared, data_state, num_steps)` per call of the train step: `batch` holds that
  many steps' worth (a leading step axis when num_steps > 1), `shared` what all of the call's steps read
  (the resident rows), `data_state` the position to checkpoint once the call has run. Inside the jitted
  step, `take(batch_k, shared)` turns one step's slice of `batch` into the global batch the model sees.
  """
  items: Iterator
  take: Callable
  batch_shardings: Callable[[int], Any]  # num_steps -> in_shardings of `batch` for a call of that size
  shared_shardings: Any
  close: Callable[[], None] = lambda: None  # ends the background transfers, if any (`prefetch`)

  def one_step_spec(self, batch, num_steps: int):
    """Shapes of a one-step call's `batch`, from a call of `num_steps`."""
    drop, sharding = int(num_steps > 1), self.batch_shardings(1)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x)[drop:], x.dtype, sharding=sharding), batch)

  def trained_batch_spec(self, batch, shared, num_steps: int):
    """Shapes of the global batch one step trains on (the gathered rows when the split is resident)."""
    return jax.eval_shape(self.take, self.one_step_spec(batch, num_steps), shared)


def plan(feed: fields.Feed, train: fields.Train, num_train: int, mesh) -> tuple[int, int]:
  """(steps per epoch, total steps), refusing batch sizes the devices and processes cannot split."""
  batch, divisor = feed.batch_size, mesh_lib.batch_divisor(mesh)
  if batch % divisor or batch % jax.process_count():
    raise UserError(f"batch size {batch} does not divide over {divisor} data-parallel devices "
                    f"(mesh data*fsdp) and {jax.process_count()} processes; use a multiple of "
                    f"{np.lcm(divisor, jax.process_count())}, e.g. --config.data.batch_size="
                    f"{max(divisor, batch // divisor * divisor)}")
  accum = train.grad_accum_steps
  if (batch // divisor) % accum:
    raise UserError(f"batch size {batch} over {divisor} devices does not split into "
                    f"{accum} micro-batches; make batch_size a multiple of {divisor * accum}")
  steps_per_epoch = num_train // batch
  if steps_per_epoch == 0:
    raise UserError(f"batch size {batch} is larger than the {num_train} training examples; lower "
                    "--config.data.batch_size")
  total = train.num_steps if train.num_steps > 0 else train.num_epochs * steps_per_epoch
  if total == 0:
    raise UserError("train.num_epochs and train.num_steps are both 0: set --config.train.num_epochs=N (or "
                    "--config.train.num_steps=N) to a positive number")
  return steps_per_epoch, total


def call_sizes(start: int, total: int, per_call: int, boundaries: list[int]):
  """Steps per call, never crossing a logging, validation or checkpoint boundary: `per_call` while a whole
  call fits before the next boundary, single steps for the rest. Only two call sizes, so two compiles."""
  step = start
  while step < total:
    stop = min([total] + [(step // b + 1) * b for b in boundaries if b > 0])
    for _ in range((stop - step) // per_call):
      yield per_call
    for _ in range((stop - step) % per_call):
      yield 1
    step = stop


def _identity(batch, shared):
  del shared
  return batch


def packing_of(config, info: dict) -> data_fields.Packing | None:
  """The run's packing settings when its data packs (data.packing, sequence data), else None."""
  packing = data_fields.Packing.of(config)
  return packing if packing.packing and info.get("seq_len") and not info.get("preference") else None


def train_rows(rows, packing: data_fields.Packing | None, info: dict, seed: int) -> int:
  """Rows of an epoch: the split's, or the packed rows of its first epoch."""
  if packing is None:
    return len(rows)
  return data_packing.rows_per_epoch(rows.arrays(), int(info["seq_len"]), seed=seed, window=packing.packing_window)


def batches(rows, transform, mesh, cfg: fields.Feed, *, start_step: int, data_state, call_sizes: Iterator[int],
            num_steps: int, per_call: int, augmented: bool = False, packing=None, seq_len: int = 0) -> Feed:
  """The loop's one data door: the training split as a `Feed`, from `start_step` (or the checkpointed
  `data_state`), in calls of `call_sizes` steps. `cfg` is the feed's section of `config.data`.

  The split lies on the devices when `cfg.on_device` allows it (`resident`); then the host sends only step
  numbers, and the step gathers its rows by the row-order rule of data/pipeline.py `rows_at`. Otherwise a
  Grain pipeline reads each process's rows and a background thread puts them on the devices ahead; so
  does an `augmented` split, whose random augmentation differs per batch, and a packed one (`packing`:
  `packing_of`'s, rows of `seq_len`), whose data position is its packer's (data/packing.py `Batches`)."""
  arrays = resident(rows, transform, mesh, "no" if augmented or packing else cfg.on_device)
  replicated = mesh_lib.replicated(mesh)
  if arrays is not None:
    start = data_state["next_index"] if data_state else start_step
    items = _resident_positions(arrays, cfg.batch_size, cfg.seed, start, call_sizes, replicated)
    return Feed(items=items, take=_gather(cfg.batch_size, mesh), batch_shardings=lambda n: replicated,
                shared_shardings=replicated)
  if packing:
    host = data_packing.Batches(rows.arrays(), seq_len, cfg.batch_size, seed=cfg.seed, window=packing.packing_window,
                                process_index=jax.process_index(), process_count=jax.process_count(),
                                transform=transform)
  else:
    host = pipeline.train_batches(rows, cfg.batch_size, num_steps, seed=cfg.seed,
                                  process_index=jax.process_index(), process_count=jax.process_count(),
                                  transform=transform, threads=cfg.threads, prefetch=cfg.prefetch)
  if data_state:
    host.set_state(data_state)
  items = prefetch(host, mesh_lib.batch_sharding(mesh), call_sizes if per_call > 1 else None,
                   mesh_lib.batch_sharding(mesh, leading_axes=1))
  return Feed(items=((batch, {}, state, n) for batch, state, n in items), take=_identity,
              batch_shardings=lambda n: mesh_lib.batch_sharding(mesh, leading_axes=int(n > 1)),
              shared_shardings=replicated, close=items.close)


def with_shared(feed: Feed, name: str, value, sharding) -> Feed:
  """`feed` whose every call also reads `value` (e.g. a frozen reference model's state) as shared[name],
  placed with `sharding` (a pytree prefix of it); `feed` itself when value is None."""
  if value is None:
    return feed
  items = iter(feed.items)
  first = next(items, None)
  if first is None:
    return feed
  shardings = {**{key: feed.shared_shardings for key in first[1]}, name: sharding}
  added = ((batch, {**shared, name: value}, state, n) for batch, shared, state, n in itertools.chain([first], items))
  return dataclasses.replace(feed, items=added, shared_shardings=shardings)


def resident(rows, transform, mesh, setting, limit_bytes: int = 256 << 20) -> dict | None:
  """The training split on the devices (replicated), for steps that gather their own batches there: on a
  small CPU, reading, handing over and transferring every batch takes a share of the step's time from XLA
  (BENCHMARKS.md, "Issue 7: performance", 1). `setting` (config.data.on_device): "auto" = when one process
  holds the split in memory and it is under `limit_bytes` after `transform`; "yes"; "no". None = the host
  feeds whole batches."""
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


def _resident_positions(arrays: dict, global_batch: int, seed: int, start: int, call_sizes: Iterator[int],
                        sharding: NamedSharding):
  """Per call over a resident split: ({"step": step number(s)}, shared, data_state, num_steps), where
  shared holds the rows and the orders of the epochs the call reaches (orders[i] is epoch first_epoch + i),
  put on the devices once per epoch. data_state is what the host path's Grain iterator would report, so a
  run resumes on either path. Per step the host sends nothing but the step number."""
  num_rows = len(next(iter(arrays.values())))
  k, placed, orders = start, None, None
  for size in call_sizes:
    first = k * global_batch // num_rows
    count = size * global_batch // num_rows + 2  # covers every epoch the call reaches; fixed per call size
    if placed != (first, count):
      stacked = np.stack([pipeline.epoch_order(num_rows, seed, e) for e in range(first, first + count)])
      orders = jax.device_put({"orders": stacked.astype(np.int32), "first_epoch": np.int32(first)}, sharding)
      placed = (first, count)
    steps = jax.device_put(np.int32(k) if size == 1 else np.arange(k, k + size, dtype=np.int32), sharding)
    k += size
    yield {"step": steps}, {"rows": arrays, **orders}, {"next_index": k}, size


def _gather(global_batch: int, mesh):
  """`take` for a resident split: global batch k is rows `rows_at(k*B + [0, B))` of the epochs' orders."""
  batch_sharding = mesh_lib.batch_sharding(mesh)

  def take(batch, shared):
    rows = shared["rows"]
    n = next(iter(rows.values())).shape[0]
    index = pipeline.rows_at(batch["step"] * global_batch + jnp.arange(global_batch), n, shared["orders"],
                             shared["first_epoch"])
    gathered = {name: jax.lax.with_sharding_constraint(v[index], batch_sharding) for name, v in rows.items()}
    # Rows may carry a per-token `loss_mask` (supervised fine-tuning: completion tokens only).
    return {**gathered, "mask": gathered.pop("loss_mask", jnp.ones((global_batch,), jnp.float32))}

  return take


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

  Closing the generator (or its end) stops the producer and waits for it: a packed split never ends, and a
  producer still transferring a batch when the interpreter shuts down aborts the process ("FATAL: exception
  not rethrown").
  """
  items: queue.Queue = queue.Queue(maxsize=depth)
  closed = threading.Event()

  def put(item) -> bool:
    while not closed.is_set():
      try:
        items.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def produce():
    try:
      for item in _items(host_iter, sharding, call_sizes, stacked):
        if not put(item):
          return
      put(_END)
    except BaseException as e:  # pylint: disable=broad-except  (handed to the consumer)
      put(e)

  producer = threading.Thread(target=produce, daemon=True, name="flaxforge-prefetch")
  producer.start()
  try:
    while True:
      item = items.get()
      if item is _END:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    closed.set()  # the consumer stopped early (time limit, signal, error, a packed split's end): end the producer
    producer.join()  # it ends after the item it is making
