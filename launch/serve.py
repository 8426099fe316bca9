"""Serve a trained run over HTTP (FastAPI on uvicorn), from its work directory or an exported artifact:

  python -m flaxforge.launch.serve --workdir=runs/20ng_bow            # POST /v1/predict
  python -m flaxforge.launch.serve --export=exported/20ng_bow --port=8080
  python -m flaxforge.launch.serve --workdir=runs/gpt                 # POST /v1/completions
  curl -s localhost:8000/v1/predict -H 'Content-Type: application/json' -d '{"texts": ["NASA launched it"]}'

Also GET /healthz and GET /metrics (Prometheus). SIGTERM or Ctrl-C answers the requests in flight, then exits.
"""
import sys

from absl import flags

from flaxforge.launch import common

EXPORT = flags.DEFINE_string("export", None, "An exported artifact folder (instead of --workdir).")
HOST = flags.DEFINE_string("host", "127.0.0.1", "Address to bind; 0.0.0.0 exposes the server to the network.")
PORT = flags.DEFINE_integer("port", 8000, "Port to listen on.")
CHECKPOINT = common.CheckpointChoice(best=False)
MAX_BATCH = flags.DEFINE_integer("max_batch", 64, "Most texts per model batch, and per request.")
MAX_WAIT_MS = flags.DEFINE_float("max_wait_ms", 5.0, "How long a batch waits for more requests to join it.")
BATCHING = flags.DEFINE_bool("batching", True, "Batch concurrent requests together (--nobatching: one at a time).")
MAX_BODY = flags.DEFINE_integer("max_body_bytes", 1 << 20, "Largest request body accepted.")
MAX_CHARS = flags.DEFINE_integer("max_text_chars", 100_000, "Longest text (or prompt) accepted.")
MAX_TOKENS = flags.DEFINE_integer("max_tokens", 512, "Largest max_tokens a completion may ask for.")
DRAIN = flags.DEFINE_float("drain_seconds", 30.0, "On SIGTERM, how long to wait for the requests in flight.")
MAX_IMAGE_PIXELS = flags.DEFINE_integer("max_image_pixels", None, "Image runs: the largest image (width x height) "
                                        "decoded; bigger ones are a 400 (default: Pillow's 178,956,970).")


def main(argv):
  del argv
  if bool(EXPORT.value) == bool(common.WORKDIR.value):
    raise common.UserError("pass exactly one of --workdir=RUN (a trained run) or --export=DIR (an exported artifact)")
  step, _ = CHECKPOINT.chosen()
  if MAX_BATCH.value < 1:
    raise common.UserError(f"--max_batch must be at least 1, not {MAX_BATCH.value}")
  if common.WORKDIR.value:
    common.use_workdir_xla_flags(common.WORKDIR.value)
  from flaxforge.serving import server  # pylint: disable=g-import-not-at-top
  predictor = sampler = None
  if EXPORT.value:
    from flaxforge import serving  # pylint: disable=g-import-not-at-top
    predictor = serving.load(EXPORT.value, max_batch=MAX_BATCH.value, max_image_pixels=MAX_IMAGE_PIXELS.value)
    name = EXPORT.value
  else:
    from flaxforge.inference import predict, sampling  # pylint: disable=g-import-not-at-top
    from flaxforge.trainer import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
    name = common.WORKDIR.value
    if workdir_lib.load_config(workdir_lib.resolve(name)).model.name == "gpt":
      sampler = sampling.Sampler.from_workdir(name, step=step)
    else:
      predictor = predict.Predictor.from_workdir(name, step=step, max_batch=MAX_BATCH.value,
                                                 max_image_pixels=MAX_IMAGE_PIXELS.value)
  limits = server.Limits(max_body_bytes=MAX_BODY.value, max_texts=MAX_BATCH.value, max_text_chars=MAX_CHARS.value,
                         max_tokens=MAX_TOKENS.value, max_wait_ms=MAX_WAIT_MS.value, batching=BATCHING.value)
  app = server.make_app(predictor=predictor, sampler=sampler, name=name, limits=limits)
  if HOST.value == "0.0.0.0":
    print("warning: --host=0.0.0.0 serves every network this machine is on, without authentication",
          file=sys.stderr)
  print(f"serving {name} on http://{HOST.value}:{PORT.value} "
        f"({'/v1/completions' if sampler else '/v1/predict'}, /healthz, /metrics)", file=sys.stderr, flush=True)
  server.serve(app, host=HOST.value, port=PORT.value, drain_seconds=DRAIN.value)


if __name__ == "__main__":
  common.run(main)
