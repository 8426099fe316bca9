"""A chat-SFT'd tiny Llama answered through its stored chat template: OpenAI's own Python client against
`/v1/chat/completions` (streaming and not), 4xx for malformed requests while the server keeps serving, and
`flaxforge generate --chat`; both stop at the template's end-of-turn token."""
import json

import httpx
import jax
import openai
import pytest

import tiny_hf
from conftest import HANG_GUARD_S, run_module
from flaxforge.inference import sampling
from flaxforge.launch.configs import finetune_lm
from flaxforge.serving import server
from flaxforge.trainer import loop
from test_serving_http import running

pytestmark = pytest.mark.slow  # a training, a server and a CLI run

FACTS = {"Two plus two?": "Four.", "Colour of the sky?": "Blue.", "Capital of France?": "Paris."}


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
  """A tiny Llama fine-tuned (all weights, packed) until it answers FACTS and then ends its turn."""
  tmp = tmp_path_factory.mktemp("chat")
  texts = [t for q, a in FACTS.items() for t in (q, a)]
  model_dir = tiny_hf.save_chat_llama(tmp / "model", texts * 10)
  rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in FACTS.items()]
  (tmp / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 16))
  c = finetune_lm.get_config()
  c.model.pretrained, c.data.path, c.data.seq_len, c.data.batch_size = model_dir, str(tmp / "chat.jsonl"), 32, 4
  c.data.packing, c.data.validation_fraction = True, 0.0
  c.train.num_steps, c.train.eval_every_steps, c.train.progress_bar = 150, 150, False
  c.optimizer.learning_rate, c.optimizer.warmup_steps, c.optimizer.schedule = 1e-2, 5, "constant"
  loop.train(c, str(tmp / "run"), devices=jax.devices()[:1])
  return str(tmp / "run")


def test_the_openai_client_gets_answers_streaming_and_not(chat_run):
  app = server.make_app(sampler=sampling.Sampler.from_workdir(chat_run), name="tiny-chat")
  with running(app) as http:
    client = openai.OpenAI(base_url=f"{str(http.base_url).rstrip('/')}/v1", api_key="unused", timeout=HANG_GUARD_S,
                           max_retries=0)
    messages = [{"role": "user", "content": "Two plus two?"}]
    answer = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=12, temperature=0)
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "Four."
    assert choice.finish_reason == "stop"  # the template's <|eot_id|> ended it, not max_tokens
    assert answer.usage.completion_tokens < 12 and answer.usage.prompt_tokens > 5

    stream = client.chat.completions.create(model="tiny-chat", messages=messages, max_tokens=12, temperature=0,
                                            stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Four."
    assert chunks[-1].choices[0].finish_reason == "stop"

    for bad, status in (({"messages": []}, 400), ({"messages": [{"content": "hi"}]}, 400),
                        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400),
                        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10_000}, 400)):
      response = http.post("/v1/chat/completions", json=bad)
      assert response.status_code == status, (bad, response.text)
      assert "\n" not in response.json()["error"]["message"]
    not_json = http.post("/v1/chat/completions", content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    with pytest.raises(openai.BadRequestError):
      client.chat.completions.create(model="tiny-chat", messages=[{"role": "user"}])
    again = client.chat.completions.create(model="tiny-chat", max_tokens=12, temperature=0,
                                           messages=[{"role": "user", "content": "Capital of France?"}])
    assert again.choices[0].message.content == "Paris."  # still serving


def test_generate_chat_answers_through_the_template(chat_run):
  out = run_module("flaxforge.launch.generate", f"--workdir={chat_run}", "--chat", "--prompt=Colour of the sky?",
                   "--temperature=0", "--max_new_tokens=12")
  assert out.stdout.strip() == "Blue."
