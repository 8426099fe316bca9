"""Sample text from a trained GPT run (key-value cache, temperature, top-k):

  python -m flaxforge.launch.generate --workdir=runs/gpt --prompt="The space shuttle" --max_new_tokens=200 \
      --temperature=0.8 --top_k=40
"""
import sys

from absl import flags

from flaxforge.launch import common

PROMPT = flags.DEFINE_string("prompt", "", "Text to continue.")
MAX_NEW = flags.DEFINE_integer("max_new_tokens", 200, "Tokens to sample after the prompt.")
TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Sampling temperature; 0 = greedy.")
TOP_K = flags.DEFINE_integer("top_k", 40, "Sample among the k most likely tokens; 0 = all.")
SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
NUM = flags.DEFINE_integer("num_samples", 1, "How many continuations to sample.")
STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")


def _check_sampling():
  """Refuses sampling flags out of range (a negative temperature would sample without a word)."""
  for holder, low in ((TEMPERATURE, 0), (TOP_K, 0), (MAX_NEW, 0), (NUM, 1)):
    if holder.value < low:
      raise common.UserError(f"--{holder.name}={holder.value} is out of range; use --{holder.name}={low} or more "
                             f"({flags.FLAGS[holder.name].help})")


def main(argv):
  del argv
  _check_sampling()
  workdir = common.require_workdir()
  common.use_workdir_xla_flags(workdir)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from flaxforge.data import lm_text  # pylint: disable=g-import-not-at-top
  from flaxforge.models import gpt  # pylint: disable=g-import-not-at-top
  from flaxforge.trainer import restore, workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  run = restore.restore(workdir, step=STEP.value)
  if run.config.model.name != "gpt":
    raise common.UserError(f"{workdir} holds a {run.config.model.name!r} model; generation needs a gpt run")
  tokenizer = workdir_lib.load_asset(run.workdir, "tokenizer")
  encode, decode, separator = lm_text.codec(tokenizer)
  prompt = encode(PROMPT.value) or [separator]
  model, _ = nnx.merge(run.structure.eval_graphdef, run.state)
  context = model.arch.max_len  # positions it was trained on; it does not slide a window past them
  if len(prompt) + MAX_NEW.value > context:
    raise common.UserError(f"the prompt ({len(prompt)} {'bytes' if tokenizer['type'] == 'bytes' else 'tokens'}) plus --max_new_tokens={MAX_NEW.value} exceed the model's "
                           f"context of {context} tokens; use --max_new_tokens={max(context - len(prompt), 0)} or less "
                           "(or a shorter prompt)")
  ids = np.tile(np.asarray(prompt, np.int32), (NUM.value, 1))
  out = gpt.generate(model, ids, MAX_NEW.value, temperature=TEMPERATURE.value, top_k=TOP_K.value,
                     rng=jax.random.key(SEED.value))
  for row in np.asarray(out):
    sys.stdout.write(decode(row) + "\n\n")


if __name__ == "__main__":
  common.run(main)
