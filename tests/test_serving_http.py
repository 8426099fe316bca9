"""The HTTP server over real localhost sockets: predictions, bad requests, bounded compiles, completions."""
import collections
import concurrent.futures
import contextlib
import json
import socket
import threading
import time

import httpx
import jax
import numpy as np
import pytest
import uvicorn
from flax import nnx
from jax import monitoring

from flaxforge.models import gpt, transformer
from flaxforge.serving import server
from flaxforge.inference import predict, sampling
from conftest import HANG_GUARD_S
from test_sampling_prefill import greedy
from test_serving import TEXTS, train_text_run

_COMPILES = collections.Counter()
monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: _COMPILES.update([kw.get("fun_name", "?")])
    if event == "/jax/core/compile/backend_compile_duration" else None)


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@contextlib.contextmanager
def running(app):
  """`app` served by uvicorn on a free localhost port (in a thread); yields an httpx client for it."""
  port = free_port()
  srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
  thread = threading.Thread(target=srv.run, daemon=True)
  thread.start()
  while not srv.started:
    assert thread.is_alive(), "the server did not start"
    time.sleep(0.02)
  try:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=HANG_GUARD_S) as client:
      yield client
  finally:
    srv.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
  return predict.Predictor.from_workdir(str(train_text_run(tmp_path_factory.mktemp("runs"))))


@pytest.mark.slow  # a whole training
def test_predictions_over_http_match_the_predictor(predictor):
  limits = server.Limits(max_texts=16)
  with running(server.make_app(predictor=predictor, name="notes", limits=limits)) as client:
    assert client.get("/healthz").json() == {"status": "ok", "model": "notes"}
    got = client.post("/v1/predict", json={"texts": TEXTS, "top_k": 2})
    assert got.status_code == 200
    want = predictor.top_k(TEXTS, 2)
    rows = got.json()["predictions"]
    assert [[t["label"] for t in r["top"]] for r in rows] == [[l for l, _ in w] for w in want]
    np.testing.assert_allclose([[t["probability"] for t in r["top"]] for r in rows],
                               [[p for _, p in w] for w in want], rtol=1e-6)
    assert [r["top"][0]["label"] for r in rows[:3]] == ["cooking", "sports", "travel"]
    text = client.get("/metrics").text
    assert 'flaxforge_requests_total{endpoint="/v1/predict",status="200"} 1.0' in text
    assert "flaxforge_batch_rows_count 1.0" in text and "flaxforge_queue_rows" in text
    assert 'flaxforge_request_latency_seconds_count{endpoint="/v1/predict"} 1.0' in text
    assert 'flaxforge_request_latency_seconds_bucket{endpoint="/v1/predict",le="+Inf"} 1.0' in text


def _bad_requests(rng, limits):
  """200 requests a client could get wrong: (content, headers)."""
  json_type = {"content-type": "application/json"}
  kinds = [
      (b"{", json_type), (b"not json at all", json_type), (b"\xff\xfe", json_type), (b"", json_type),
      (b"[]", json_type), (b"3", json_type), (b'{"texts": []}', json_type), (b'{"texts": "one"}', json_type),
      (b'{"texts": [1, 2]}', json_type), (b'{"texts": [null]}', json_type), (b'{"text": ["a"]}', json_type),
      (b'{"texts": ["a"], "top_k": 0}', json_type), (b'{"texts": ["a"], "top_k": "2"}', json_type),
      (b'{"texts": ["a"], "top_k": true}', json_type), (b'{"texts": ["a"], "top_k": 99}', json_type),
      (json.dumps({"texts": ["x" * (limits.max_text_chars + 1)]}).encode(), json_type),
      (json.dumps({"texts": ["a"] * (limits.max_texts + 1)}).encode(), json_type),
      (b'{"texts": ["' + b"a" * limits.max_body_bytes + b'"]}', json_type),
      (b'{"texts": ["a"]}', {"content-type": "text/plain"}), (b'{"texts": ["a"]}', {}),
      (b'texts=a', {"content-type": "application/x-www-form-urlencoded"}),
  ]
  return [kinds[i] for i in rng.integers(0, len(kinds), 200 - len(kinds))] + kinds


@pytest.mark.slow  # a whole training
def test_malformed_and_oversized_requests_get_4xx_json_and_the_server_goes_on(predictor):
  limits = server.Limits(max_texts=8, max_text_chars=1000, max_body_bytes=20_000)
  with running(server.make_app(predictor=predictor, limits=limits)) as client:
    for content, headers in _bad_requests(np.random.default_rng(0), limits):
      r = client.post("/v1/predict", content=content, headers=headers)
      assert 400 <= r.status_code < 500, (content[:60], r.status_code, r.text[:200])
      message = r.json()["error"]["message"]
      assert message and "\n" not in message, r.text
    assert client.get("/v1/predict").status_code == 405 and client.post("/v2/x", json={}).status_code == 404
    good = client.post("/v1/predict", json={"texts": ["bake the flour in the oven"]})
    assert good.status_code == 200 and good.json()["predictions"][0]["top"][0]["label"] == "cooking"
    assert 'flaxforge_errors_total{endpoint="/v1/predict"} 201.0' in client.get("/metrics").text


@pytest.mark.slow  # a whole training
def test_an_empty_input_is_a_400_naming_the_field(predictor):
  """One rule for empty inputs (inference/inputs.py), as `flaxforge predict` and the Python Predictor apply it."""
  with running(server.make_app(predictor=predictor)) as client:
    r = client.post("/v1/predict", json={"texts": ["bake the flour", " \n"]})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "'texts'[1] is a blank text: there is nothing to predict from; remove it"
    assert client.post("/v1/predict", json={"texts": ["bake the flour"]}).status_code == 200


@pytest.mark.slow  # a whole training
def test_no_request_waits_for_a_compile(predictor):
  """README: no request waits for a compile. A fresh Predictor (its own jitted function) of the module's run,
  the counter cleared before the app starts: the smallest and largest padded sizes compile before it accepts
  requests, the others in the warm-up thread (tests/test_warm_up.py: meanwhile batches pad to a ready size);
  once it is done, 60 concurrent requests of varied sizes compile nothing."""
  fresh = predict.Predictor.from_workdir(str(predictor.run.workdir))
  limits = server.Limits(max_texts=64, max_wait_ms=2)
  rng = np.random.default_rng(1)
  sizes = [int(n) for n in rng.integers(1, 65, 60)]
  _COMPILES.clear()
  with running(server.make_app(predictor=fresh, limits=limits)) as client:
    started = dict(_COMPILES)
    # Batches pad to 8, 16, 32 or 64 rows (8 devices); 8 and 64 are compiled before the first request.
    assert fresh.sizes == [8, 16, 32, 64] and started.get("jit(apply)", 0) >= 2, started
    assert fresh.warmed.wait(timeout=HANG_GUARD_S)
    assert dict(_COMPILES) == {"jit(apply)": len(fresh.sizes)}, dict(_COMPILES)  # each size once, by warm-up
    _COMPILES.clear()

    def ask(n):
      r = client.post("/v1/predict", json={"texts": ["bake the flour"] * n})
      return r.status_code, len(r.json()["predictions"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
      answers = list(pool.map(ask, sizes))
    assert answers == [(200, n) for n in sizes]
    text = client.get("/metrics").text
  assert sum(_COMPILES.values()) == 0, dict(_COMPILES)
  batches = float(text.split("flaxforge_batch_rows_count ")[1].split()[0])
  assert batches < len(sizes), "concurrent requests were never batched together"


@pytest.mark.slow  # a whole training
def test_batching_off_runs_each_request_alone(predictor):
  limits = server.Limits(max_texts=64, batching=False)
  with running(server.make_app(predictor=predictor, limits=limits)) as client:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
      list(pool.map(lambda _: client.post("/v1/predict", json={"texts": ["a b"]}), range(24)))
    assert "flaxforge_batch_rows_count 24.0" in client.get("/metrics").text


@pytest.fixture(scope="module")
def tiny_gpt():
  arch = transformer.arch_from_config({"size": "tiny", "num_layers": 1, "position": "learned", "max_len": 128},
                                      {"vocab_size": 256, "seq_len": 128})
  model = gpt.GPT(arch, rngs=nnx.Rngs(0))
  model.eval()
  return model


def test_completions_follow_the_openai_shape_and_greedy_matches_an_uncached_loop(tiny_gpt):
  sampler = sampling.Sampler(tiny_gpt, {"type": "bytes", "separator": 0}, max_context=128)
  with running(server.make_app(sampler=sampler, name="gpt", limits=server.Limits(max_tokens=12))) as client:
    r = client.post("/v1/completions", json={"prompt": "The shuttle", "max_tokens": 12, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == "gpt" and body["id"].startswith("cmpl-")
    choice = body["choices"][0]
    assert choice["finish_reason"] == "length" and body["usage"] == {
        "prompt_tokens": 11, "completion_tokens": 12, "total_tokens": 23}
    want = greedy(tiny_gpt, list(b"The shuttle"), 12, length=128)
    assert choice["text"] == bytes(want).decode("utf-8", errors="replace")
    stop = choice["text"][3:5]
    r = client.post("/v1/completions", json={"prompt": "The shuttle", "max_tokens": 12, "temperature": 0,
                                             "stop": [stop]})
    assert r.json()["choices"][0] == {"text": choice["text"][:choice["text"].find(stop)], "index": 0,
                                      "logprobs": None, "finish_reason": "stop"}
    sampled = [client.post("/v1/completions", json={"prompt": "a", "max_tokens": 12, "temperature": 1.0,
                                                    "top_p": 0.9, "top_k": 40, "seed": s}).json() for s in (1, 2)]
    assert sampled[0]["choices"][0]["text"] != sampled[1]["choices"][0]["text"]
    too_long = client.post("/v1/completions", json={"prompt": "x" * 120, "max_tokens": 12})
    assert too_long.status_code == 400 and "context of 128" in too_long.json()["error"]["message"]
    too_many = client.post("/v1/completions", json={"prompt": "a", "max_tokens": 13})  # over --max_tokens
    assert too_many.status_code == 400 and too_many.json()["error"]["message"] == (
        "'max_tokens' must be between 1 and 12"), too_many.text
    assert client.post("/v1/predict", json={"texts": ["a"]}).status_code == 404


def test_top_p_and_top_k_keep_only_the_likely_tokens():
  logits = jax.numpy.log(jax.numpy.array([0.5, 0.3, 0.15, 0.05]))
  keys = jax.random.split(jax.random.key(0), 400)
  pick = jax.vmap(lambda k, tk, tp: sampling._pick(logits, k, 1.0, tk, tp), in_axes=(0, None, None))
  assert set(np.asarray(pick(keys, 0, 0.75)).tolist()) == {0, 1}  # 0.5 < 0.75 <= 0.8
  assert set(np.asarray(pick(keys, 1, 1.0)).tolist()) == {0}
  assert set(np.asarray(pick(keys, 0, 1.0)).tolist()) == {0, 1, 2, 3}


@pytest.mark.slow  # a subprocess CLI run
def test_completions_from_a_trained_gpt_run(tiny_gpt_run):
  """The session's tiny GPT (conftest.py tiny_gpt_run: rotary positions, trained on windows of 32 bytes)."""
  sampler = sampling.Sampler.from_workdir(str(tiny_gpt_run.workdir))
  with running(server.make_app(sampler=sampler, name="gpt")) as client:
    r = client.post("/v1/completions", json={"prompt": "the cat", "max_tokens": 8, "temperature": 0})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 8
    past = client.post("/v1/completions", json={"prompt": "the cat", "max_tokens": 100})  # rope: trained on 32
    assert past.status_code == 400 and past.json()["error"]["message"] == (
        "the prompt (7 bytes) plus max_tokens=100 exceed the model's context of 32 tokens; use max_tokens=25 or less "
        "(or a shorter prompt)")
  model = nnx.merge(sampler.graphdef, sampler.state)
  want = greedy(model, list(b"the cat"), 8, length=32)
  assert r.json()["choices"][0]["text"] == bytes(want).decode("utf-8", errors="replace")


def test_a_batch_waits_only_for_requests_on_their_way():
  import asyncio  # pylint: disable=g-import-not-at-top
  from flaxforge.serving import batcher as batcher_lib  # pylint: disable=g-import-not-at-top
  sizes = []
  # A wait of an hour: a batch that waited for it, rather than for the requests on their way, would hang.
  batcher = batcher_lib.Batcher(lambda rows: sizes.append(len(rows)) or rows * 2, max_batch=8, max_wait_ms=3.6e6)
  batcher.start()

  async def scenario():
    batcher.announce()
    alone = await batcher.submit(np.ones((1, 2)))  # nobody else announced: answered without waiting
    batcher.announce()
    batcher.announce()
    first = asyncio.ensure_future(batcher.submit(np.ones((2, 2))))
    await asyncio.sleep(0.3)  # the second announced request arrives later and still joins the batch
    second = await batcher.submit(np.full((3, 2), 5.0))
    return alone, await first, second

  alone, first, second = asyncio.run(asyncio.wait_for(scenario(), HANG_GUARD_S))
  batcher.stop()
  assert sizes == [1, 5]
  np.testing.assert_array_equal(alone, 2 * np.ones((1, 2)))
  np.testing.assert_array_equal(first, 2 * np.ones((2, 2)))
  np.testing.assert_array_equal(second, np.full((3, 2), 10.0))
