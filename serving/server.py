"""The HTTP server: FastAPI on uvicorn, a classifier through the dynamic batcher, a GPT through the sampler.

  POST /v1/predict      {"texts": [str, ...], "top_k": 3} -> {"predictions": [{"top": [{label, probability}]}]}
                        (image runs: "images": [base64 of a file, ...]; table runs: "rows": [{column: value}];
                        a regression run answers {"value": float} per input; an empty input, a table cell
                        that is no finite number (NaN, Infinity) or an image over the pixel limit is a 400
                        naming the field: inference/inputs.py; a table row's categories that training never
                        saw are named in its "unseen" and counted in "warnings")
  POST /v1/completions  OpenAI completions shape: prompt, max_tokens, temperature, top_k, top_p, stop, seed
                        (the prompt plus max_tokens within the run's context: inference/sampling.py `context`)
  POST /v1/chat/completions  OpenAI chat completions through a chat run's template, `stream` as server-sent
                        events (serving/chat_completions.py)
  GET  /healthz         {"status": "ok"}
  GET  /metrics         Prometheus text format

Every mistake is a 4xx JSON `{"error": {"message": one line, "type": ...}}`; the server keeps serving.
"""
import dataclasses
import json
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from flaxforge.core.errors import UserError
from flaxforge.inference import inputs, predict as predict_lib
from flaxforge.serving import batcher as batcher_lib, chat_completions


@dataclasses.dataclass
class Limits:
  max_body_bytes: int = 1 << 20
  max_texts: int = 64  # per request; also the largest batch
  max_text_chars: int = 100_000
  max_tokens: int = 512  # completions
  max_wait_ms: float = 5.0
  batching: bool = True


class BadRequest(Exception):
  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


class Metrics:
  """The server's Prometheus metrics, in their own registry (several servers may share a process)."""

  def __init__(self, max_batch: int):
    self.registry = r = CollectorRegistry()
    self.requests = Counter("flaxforge_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                            registry=r)
    self.errors = Counter("flaxforge_errors", "Requests answered with a 4xx or 5xx", ["endpoint"], registry=r)
    self.latency = Histogram("flaxforge_request_latency_seconds", "Request latency", ["endpoint"], registry=r,
                             buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
    self.batch = Histogram("flaxforge_batch_rows", "Rows per model batch", registry=r,
                           buckets=predict_lib.bucket_sizes(max_batch))
    self.queue = Gauge("flaxforge_queue_rows", "Rows waiting for the model", registry=r)

  def observe_batch(self, rows: int, queued: int):
    self.batch.observe(rows)
    self.queue.set(queued)


async def _json_body(request: Request, limits: Limits) -> dict:
  if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
    raise BadRequest("send the body as JSON with Content-Type: application/json", 415)
  declared = request.headers.get("content-length")
  if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
    raise BadRequest(f"request body over {limits.max_body_bytes} bytes; send fewer or shorter texts", 413)
  body = bytearray()
  async for chunk in request.stream():
    body += chunk
    if len(body) > limits.max_body_bytes:
      raise BadRequest(f"request body over {limits.max_body_bytes} bytes; send fewer or shorter texts", 413)
  try:
    value = json.loads(body)
  except (ValueError, UnicodeDecodeError) as e:
    raise BadRequest(f"the body is not valid JSON ({str(e).splitlines()[0]})") from None
  if not isinstance(value, dict):
    raise BadRequest("the body must be a JSON object")
  return value


def _number(body: dict, name: str, kind, default, *, low, high):
  """body[name] (or default) as an int or float within [low, high]; JSON true/false are not numbers."""
  value = body.get(name, default)
  if kind is float and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if not isinstance(value, kind) or isinstance(value, bool):
    raise BadRequest(f"'{name}' must be {'an integer' if kind is int else 'a number'}")
  if not low <= value <= high:
    raise BadRequest(f"'{name}' must be between {low} and {high}")
  return value


def _stops(body: dict) -> list[str]:
  stop = body.get("stop") or []
  stop = [stop] if isinstance(stop, str) else stop
  if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop):
    raise BadRequest("'stop' must be a string or a list of at most 4 strings")
  return stop


def make_app(*, predictor: predict_lib.Predictor | None = None, sampler=None, name: str = "flaxforge",
             limits: Limits | None = None) -> FastAPI:
  """The ASGI app over a classifier `predictor`, a GPT `sampler` (inference/sampling.py), or both."""
  limits = limits or Limits()
  metrics = Metrics(limits.max_texts)
  batcher = None
  if predictor is not None:
    batcher = batcher_lib.Batcher(predictor.logits, max_batch=limits.max_texts, max_wait_ms=limits.max_wait_ms,
                                  batching=limits.batching, observe=metrics.observe_batch)

  async def lifespan(app):
    del app
    if batcher:
      predictor.warm_up(background=True)  # ready after two compiles; no request waits for the others
      batcher.start()
    yield
    if batcher:
      batcher.stop()  # after uvicorn has answered the requests in flight
      predictor.stop_warm_up()

  app = FastAPI(title=f"flaxforge: {name}", lifespan=lifespan)
  app.state.metrics, app.state.batcher = metrics, batcher

  def error(status: int, message: str) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)

  @app.exception_handler(StarletteHTTPException)
  async def http_error(request, exc):  # unknown paths and methods
    del request
    return error(exc.status_code, str(exc.detail))

  @app.middleware("http")
  async def measure(request: Request, call_next):
    start, endpoint = time.perf_counter(), request.url.path
    try:
      response = await call_next(request)
    except BadRequest as e:
      response = error(e.status, str(e))
    except UserError as e:
      response = error(400, str(e))
    except Exception as e:  # pylint: disable=broad-except  (one line to the client; the server goes on)
      response = error(500, f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    if endpoint in ("/v1/predict", "/v1/completions", chat_completions.PATH, "/healthz", "/metrics"):
      metrics.requests.labels(endpoint, str(response.status_code)).inc()
      metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
      if response.status_code >= 400:
        metrics.errors.labels(endpoint).inc()
    return response

  @app.get("/healthz")
  async def healthz():
    return {"status": "ok", "model": name}

  @app.get("/metrics")
  async def prometheus():
    if batcher:
      metrics.queue.set(batcher.queued_rows)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

  @app.post("/v1/predict")
  async def predict(request: Request):
    if predictor is None:
      raise BadRequest("this server holds a language model: use /v1/completions", 404)
    batcher.announce()
    try:
      body = await _json_body(request, limits)
      try:
        raws = predictor.modality.from_json(body, max_inputs=limits.max_texts, max_chars=limits.max_text_chars)
      except inputs.TooLarge as e:
        raise BadRequest(str(e), 413) from None
      classes = len(predictor.labels) or 1
      k = _number(body, "top_k", int, min(3, classes), low=1, high=classes)
      names = predictor.modality.json_names(len(raws))
      rows = predictor.encode(raws, names)
      unseen, warning = predictor.encode.unseen(raws, names)
    except BaseException:
      batcher.announce(-1)
      raise
    logits = await batcher.submit(rows)
    return {"model": name, "predictions": predictor.with_unseen(predictor.results_of(logits, k), unseen),
            **({"warnings": [warning]} if warning else {})}

  @app.post("/v1/completions")
  async def completions(request: Request):
    if sampler is None:
      raise BadRequest("this server holds a classifier: use /v1/predict", 404)
    body = await _json_body(request, limits)
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str):
      raise BadRequest("'prompt' must be a string (one prompt per request)")
    if len(prompt) > limits.max_text_chars:
      raise BadRequest(f"the prompt is over {limits.max_text_chars} characters; shorten it", 413)
    if body.get("stream"):
      raise BadRequest("streaming is not supported; leave 'stream' out")
    options = dict(max_tokens=_number(body, "max_tokens", int, 16, low=1, high=limits.max_tokens),
                   temperature=_number(body, "temperature", float, 1.0, low=0.0, high=10.0),
                   top_k=_number(body, "top_k", int, 0, low=0, high=1 << 20),
                   top_p=_number(body, "top_p", float, 1.0, low=0.0, high=1.0),
                   seed=_number(body, "seed", int, 0, low=0, high=2**31 - 1), stop=_stops(body))
    done = await run_in_threadpool(sampler.complete, prompt, **options)
    return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
            "model": name, "choices": [{"text": done.text, "index": 0, "logprobs": None,
                                        "finish_reason": done.finish_reason}],
            "usage": {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                      "total_tokens": done.prompt_tokens + done.completion_tokens}}

  chat_completions.add_route(app, sampler, name=name, limits=limits, json_body=_json_body, number=_number,
                             stops=_stops, bad_request=BadRequest)
  return app


def serve(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000, drain_seconds: float = 30.0):
  """Runs until SIGTERM or SIGINT; then stops accepting, answers the requests in flight (up to
  `drain_seconds`), and returns. Call it from the main thread (it sets the process's signal handlers)."""
  import signal  # pylint: disable=g-import-not-at-top
  import uvicorn  # pylint: disable=g-import-not-at-top
  # uvicorn handles both signals while it runs, and re-raises the one that stopped it once it has drained;
  # no-op handlers underneath make that a clean exit 0.
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda signum, frame: None)
  config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          timeout_graceful_shutdown=drain_seconds)
  uvicorn.Server(config).run()

