"""OpenAI's `POST /v1/chat/completions` over a chat run's sampler (inference/sampling.py `Sampler.chat`): the
messages rendered by the run's own chat template, the reply ended by its end-of-turn token.

  {"messages": [{"role", "content"}, ...], "max_tokens", "temperature", "top_p", "top_k", "stop", "seed",
   "stream"} -> {"object": "chat.completion", "choices": [{"message": {"role": "assistant", "content"},
   "finish_reason"}], "usage"}

With `"stream": true` the answer is server-sent events of `chat.completion.chunk` objects (the role, then
the text, then the finish reason) ended by `data: [DONE]`, as OpenAI's clients read them. The sampler runs
its whole decode loop on the devices in one call, so the chunks follow once the reply is complete: the
protocol is OpenAI's, the latency is that of a reply without streaming. Mistakes are 4xx (server.py).
"""
import json
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

PATH = "/v1/chat/completions"


def add_route(app: FastAPI, sampler, *, name: str, limits, json_body, number, stops, bad_request):
  """Adds PATH to `app` (server.make_app's helpers: its body reader, number and stop parsers, BadRequest)."""

  @app.post(PATH)
  async def chat_completions(request: Request):
    if sampler is None or sampler.chat_template is None:
      raise bad_request("this server holds no chat model (a run trained on {\"messages\"} rows): use "
                        "/v1/completions or /v1/predict", 404)
    body = await json_body(request, limits)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
      raise bad_request("'messages' must be a non-empty list of {\"role\", \"content\"} objects")
    if len(json.dumps(messages)) > limits.max_text_chars:
      raise bad_request(f"the messages are over {limits.max_text_chars} characters; shorten them", 413)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    options = dict(max_tokens=number({"max_tokens": max_tokens} if max_tokens is not None else {}, "max_tokens",
                                     int, 16, low=1, high=limits.max_tokens),
                   temperature=number(body, "temperature", float, 1.0, low=0.0, high=10.0),
                   top_k=number(body, "top_k", int, 0, low=0, high=1 << 20),
                   top_p=number(body, "top_p", float, 1.0, low=0.0, high=1.0),
                   seed=number(body, "seed", int, 0, low=0, high=2**31 - 1), stop=stops(body))
    if body.get("n", 1) != 1:
      raise bad_request("'n' must be 1 (one reply per request)")
    done = await run_in_threadpool(sampler.chat, messages, **options)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": name}
    if not body.get("stream"):
      return {**head, "object": "chat.completion",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text}, "logprobs": None,
                           "finish_reason": done.finish_reason}],
              "usage": {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                        "total_tokens": done.prompt_tokens + done.completion_tokens}}
    chunk = lambda delta, finish: "data: " + json.dumps({**head, "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}) + "\n\n"
    events = [chunk({"role": "assistant", "content": ""}, None), chunk({"content": done.text}, None),
              chunk({}, done.finish_reason), "data: [DONE]\n\n"]
    return StreamingResponse(iter(events), media_type="text/event-stream")
