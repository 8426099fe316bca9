"""trainer/feed.py `prefetch`: closing it ends its producer thread before returning. A packed split never ends,
and a producer still transferring a batch when the interpreter shuts down aborts the process ("FATAL:
exception not rethrown"); the loop closes its feed however it ends."""
import itertools
import threading
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from flaxforge.trainer import feed as feed_lib


def _producers() -> list[threading.Thread]:
  return [t for t in threading.enumerate() if t.name == "flaxforge-prefetch" and t.is_alive()]


def test_closing_an_endless_prefetch_ends_its_producer():
  made = []

  def endless():  # like a packed split: batches without end, each taking a while to make
    for i in itertools.count():
      time.sleep(0.05)
      made.append(i)
      yield {"x": np.full((8, 2), i, np.float32)}

  sharding = NamedSharding(Mesh(np.array(jax.devices()[:1]), ("data",)), PartitionSpec("data"))
  before = len(_producers())
  items = feed_lib.prefetch(endless(), sharding, depth=2)
  got = [int(next(items)[0]["x"][0, 0]) for _ in range(3)]
  assert got == [0, 1, 2]
  assert len(_producers()) == before + 1  # filling the queue ahead
  items.close()
  assert len(_producers()) == before  # gone when close() returns, not merely told to go
  made_at_close = len(made)
  time.sleep(0.2)
  assert len(made) == made_at_close  # and nothing more is read


def test_the_loop_closes_its_feed(tmp_path, monkeypatch):
  """However the loop ends (here: at its last step), the feed's close() has been called."""
  from flaxforge.launch.configs import tiny  # pylint: disable=g-import-not-at-top
  from flaxforge.trainer import loop  # pylint: disable=g-import-not-at-top
  real, closed = feed_lib.batches, []

  def batches(*args, **kwargs):
    feed = real(*args, **kwargs)
    close = feed.close
    feed.close = lambda: (closed.append(True), close())
    return feed
  monkeypatch.setattr(feed_lib, "batches", batches)
  config = tiny.get_config()
  config.train.num_steps, config.data.on_device = 5, "no"
  loop.train(config, str(tmp_path / "run"))
  assert closed == [True]
