"""Dynamic batching: concurrent requests' rows run together on one worker thread.

The worker takes the oldest waiting request, then keeps adding requests (oldest first) until the batch
holds `max_batch` rows, `max_wait_ms` has passed since it started collecting, or no other request is on its
way (announced by the server when it starts reading one, not yet submitted): waiting longer could only
delay the batch. The model pads the batch to one of a few sizes (inference/predict.py `bucket_sizes`), so no
request size compiles a new program. With batching off, every request runs alone (the load test's baseline).
"""
import asyncio
import collections
import threading
import time

import numpy as np


class Batcher:
  """`await batcher.submit(rows)` -> `run_batch(rows)`'s output rows for these rows.

  `run_batch(rows [N, ...]) -> np.ndarray [N, ...]`, called on the worker thread with N <= max_batch.
  `observe(batch_rows, queued_rows)`: called before each batch runs (metrics).
  """

  def __init__(self, run_batch, *, max_batch: int, max_wait_ms: float, batching: bool = True, observe=None):
    self.run_batch, self.max_batch, self.max_wait = run_batch, max_batch, max_wait_ms / 1000
    self.batching, self.observe = batching, observe or (lambda batch, queued: None)
    self._waiting = collections.deque()  # (rows, future, event loop)
    self._ready = threading.Condition()
    self._stopping = False
    self._announced = 0  # requests the server has started reading that have not been submitted yet
    self._thread = threading.Thread(target=self._work, name="flaxforge-batcher", daemon=True)

  def start(self):
    self._thread.start()

  def stop(self):
    """Runs what is queued, then ends the worker."""
    with self._ready:
      self._stopping = True
      self._ready.notify()
    self._thread.join()

  @property
  def queued_rows(self) -> int:
    return sum(len(rows) for rows, _, _ in list(self._waiting))

  def announce(self, delta: int = 1):
    """A request is on its way (+1), or will not be submitted after all (-1)."""
    with self._ready:
      self._announced += delta
      self._ready.notify()

  async def submit(self, rows: np.ndarray) -> np.ndarray:
    """Submits an announced request's rows."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    with self._ready:
      self._announced -= 1
      self._waiting.append((rows, future, loop))
      self._ready.notify()
    return await future

  def _take(self) -> list | None:
    """The next batch of requests, or None once stopping with nothing queued."""
    with self._ready:
      while not self._waiting:
        if self._stopping:
          return None
        self._ready.wait()
      taken = [self._waiting.popleft()]
      if not self.batching:
        return taken
      rows = len(taken[0][0])
      deadline = time.monotonic() + self.max_wait
      while rows < self.max_batch:
        if self._waiting:
          if rows + len(self._waiting[0][0]) > self.max_batch:
            break
          taken.append(self._waiting.popleft())
          rows += len(taken[-1][0])
          continue
        left = deadline - time.monotonic()
        if left <= 0 or self._stopping or self._announced <= 0:
          break
        self._ready.wait(left)
      return taken

  def _work(self):
    while (taken := self._take()) is not None:
      inputs = np.concatenate([rows for rows, _, _ in taken])
      self.observe(len(inputs), self.queued_rows)
      try:
        outputs, error = self.run_batch(inputs), None
      except Exception as e:  # pylint: disable=broad-except  (answered to each request, the worker goes on)
        outputs, error = None, e
      start = 0
      for rows, future, loop in taken:
        if error is None:
          loop.call_soon_threadsafe(_resolve, future, outputs[start:start + len(rows)], None)
        else:
          loop.call_soon_threadsafe(_resolve, future, None, error)
        start += len(rows)


def _resolve(future, value, error):
  if future.done():  # the client went away
    return
  if error is not None:
    future.set_exception(error)
  else:
    future.set_result(value)
