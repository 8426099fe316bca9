"""The server's warm-up (issue 27, item 3: serve ready sooner): each padded batch size is compiled without being
run, the smallest and the largest before the server is ready and the others in the background, and until a
size is ready a batch pads to the next one that is, so no request waits for a compile."""
import threading

import numpy as np

from flaxforge.data import text
from flaxforge.inference import predict

INFO = {"task": "classification", "num_classes": 2, "seq_len": 4}
ASSETS = {"labels": ["a", "b"],
          "text_encoder": text.fit_encoder(["x y", "y z"], text.encoder_options({"seq_len": 4})).to_json()}


class Logits:
  """A logits function that compiles ahead (`compile`), where the middle sizes' compiles wait for `release`."""

  def __init__(self):
    self.compiled, self.called, self.release = [], [], threading.Event()

  def compile(self, shape, dtype):
    if shape[0] not in (1, 8):
      self.release.wait()
    self.compiled.append(shape[0])

  def __call__(self, inputs):
    self.called.append(len(inputs))
    return np.zeros((len(inputs), 2), np.float32)


def test_serving_is_ready_after_two_compiles_and_never_waits_for_the_others():
  logits = Logits()
  predictor = predict.Predictor(logits, INFO, ASSETS, max_batch=8)
  assert predictor.sizes == [1, 2, 4, 8]
  predictor.warm_up(background=True)  # returns once 1 and 8 are compiled
  assert sorted(logits.compiled) == [1, 8] and not logits.called  # compiled, never run
  predictor.logits(np.zeros((3, 4), np.int32))
  assert logits.called == [8]  # size 4 is not ready yet: the batch pads to 8
  logits.release.set()
  predictor.warmed.wait(timeout=60)
  assert sorted(logits.compiled) == [1, 2, 4, 8]
  predictor.logits(np.zeros((3, 4), np.int32))
  assert logits.called == [8, 4]


def test_a_plain_warm_up_compiles_every_size_first():
  logits = Logits()
  logits.release.set()
  predictor = predict.Predictor(logits, INFO, ASSETS, max_batch=8)
  predictor.warm_up()
  assert sorted(logits.compiled) == [1, 2, 4, 8] and not logits.called


def test_stopping_ends_a_background_warm_up_after_the_compile_in_progress():
  logits = Logits()
  predictor = predict.Predictor(logits, INFO, ASSETS, max_batch=8)
  predictor.warm_up(background=True)
  threading.Timer(0.2, logits.release.set).start()  # the compile of size 2 in progress ends
  predictor.stop_warm_up()  # returns once it has: no compile is left running at exit
  assert sorted(logits.compiled) == [1, 2, 8] and predictor.warmed.is_set()
