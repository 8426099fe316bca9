"""Sample text from a trained GPT run (key-value cache, temperature, top-k):

  flaxforge generate --workdir=runs/gpt --prompt="The space shuttle" --temperature=0.8 --top_k=40
  flaxforge generate --workdir=runs/gpt --prompt="The space shuttle" --max_new_tokens=50 [--step=N | --best]

Each sample ends at the run's end-of-text id (a Hugging Face tokenizer's, or a byte-level run's separator
byte; --nostop_at_eos samples all --max_new_tokens), which is not printed; nor is the one an empty prompt
starts from. The prompt plus the new tokens must fit in the run's context: the positions it was trained on
(data.seq_len, or a pretrained model's if more). Serving's sampler (inference/sampling.py) does the sampling.

  flaxforge generate --workdir=runs/chat --chat --prompt="What is the capital of France?"
  flaxforge generate --workdir=runs/chat --chat --prompt='[{"role": "system", "content": "Be terse."}, ...]'

--chat answers as the assistant of a chat run (trained on {"messages"} rows): the prompt is the user's
message, or a JSON list of messages, rendered by the run's stored chat template; the reply ends at the
template's end-of-turn token.
"""
import json
import sys

from absl import flags

from flaxforge.launch import common

PROMPT = flags.DEFINE_string("prompt", "", "Text to continue.")
DEFAULT_NEW = 200
MAX_NEW = flags.DEFINE_integer("max_new_tokens", None, f"Tokens to sample after the prompt (default: {DEFAULT_NEW}, "
                               "or as many as the model's context has room for after the prompt, if fewer).")
TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Sampling temperature; 0 = greedy.")
TOP_K = flags.DEFINE_integer("top_k", 40, "Sample among the k most likely tokens; 0 = all.")
SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
NUM = flags.DEFINE_integer("num_samples", 1, "How many continuations to sample.")
CHECKPOINT = common.CheckpointChoice()
CHAT = flags.DEFINE_bool("chat", False, "Answer --prompt (the user's message, or a JSON list of messages) as the "
                         "assistant, through the run's chat template.")
STOP_AT_EOS = flags.DEFINE_bool("stop_at_eos", True, "End a sample at the tokenizer's end-of-text id (byte-level "
                                "runs: the separator byte); --nostop_at_eos samples all --max_new_tokens.")


def _check_sampling():
  """Refuses sampling flags out of range (a negative temperature would sample without a word)."""
  for holder, low in ((TEMPERATURE, 0), (TOP_K, 0), (MAX_NEW, 0), (NUM, 1)):
    if holder.value is not None and holder.value < low:
      raise common.UserError(f"--{holder.name}={holder.value} is out of range; use --{holder.name}={low} or more "
                             f"({flags.FLAGS[holder.name].help})")


def main(argv):
  del argv
  _check_sampling()
  step, best = CHECKPOINT.chosen()
  workdir = common.require_workdir()
  common.use_workdir_xla_flags(workdir)
  from flaxforge.inference import sampling  # pylint: disable=g-import-not-at-top

  sampler = sampling.Sampler.from_workdir(workdir, step=step, best=best)
  if CHAT.value:
    _chat(sampler)
    return
  prompt = sampler.encode(PROMPT.value)
  count = MAX_NEW.value if MAX_NEW.value is not None else min(DEFAULT_NEW, max(sampler.room(prompt), 1))
  sampler.check(prompt, count, "--max_new_tokens")
  samples = sampler.sample(prompt, count, num_samples=NUM.value, temperature=TEMPERATURE.value,
                           top_k=TOP_K.value, seed=SEED.value, stop_at_eos=STOP_AT_EOS.value)
  for new in samples:
    sys.stdout.write(sampler.decode(prompt + new) + "\n\n")


def _chat(sampler):
  """--chat: one assistant reply per sample, each followed by a blank line."""
  text = PROMPT.value.strip()
  try:
    messages = json.loads(text) if text.startswith("[") else [{"role": "user", "content": PROMPT.value}]
  except ValueError as e:
    raise common.UserError(f"--prompt starts with '[' but is not a JSON list of messages ({e}); fix it, or "
                           "pass the user's message as plain text") from None
  count = MAX_NEW.value if MAX_NEW.value is not None else DEFAULT_NEW
  if MAX_NEW.value is None and sampler.chat_template is not None:  # as many as fit, up to DEFAULT_NEW
    count = min(DEFAULT_NEW, max(sampler.room(sampler.chat_template.prompt_ids(messages)), 1))
  for r in range(NUM.value):
    done = sampler.chat(messages, max_tokens=count, temperature=TEMPERATURE.value, top_k=TOP_K.value,
                        seed=SEED.value + r)
    sys.stdout.write(done.text + "\n\n")


if __name__ == "__main__":
  common.run(main)
