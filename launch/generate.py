"""Sample text from a trained GPT run (key-value cache, temperature, top-k):

  python -m flaxforge.launch.generate --workdir=runs/gpt --prompt="The space shuttle" --max_new_tokens=200 \
      --temperature=0.8 --top_k=40 [--step=N | --best]

Each sample ends at the run's end-of-text id (a Hugging Face tokenizer's, or a byte-level run's separator
byte; --nostop_at_eos samples all --max_new_tokens), which is not printed. Serving's sampler
(trainer/sampling.py) does the sampling.
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
BEST = flags.DEFINE_bool("best", False, "Use the checkpoint with the best validation metric.")
STOP_AT_EOS = flags.DEFINE_bool("stop_at_eos", True, "End a sample at the tokenizer's end-of-text id (byte-level "
                                "runs: the separator byte); --nostop_at_eos samples all --max_new_tokens.")


def _check_sampling():
  """Refuses sampling flags out of range (a negative temperature would sample without a word)."""
  for holder, low in ((TEMPERATURE, 0), (TOP_K, 0), (MAX_NEW, 0), (NUM, 1)):
    if holder.value < low:
      raise common.UserError(f"--{holder.name}={holder.value} is out of range; use --{holder.name}={low} or more "
                             f"({flags.FLAGS[holder.name].help})")


def main(argv):
  del argv
  _check_sampling()
  common.one_checkpoint(STEP.value, BEST.value)
  workdir = common.require_workdir()
  common.use_workdir_xla_flags(workdir)
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from flaxforge.trainer import restore, sampling, workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  run = restore.restore(workdir, step=STEP.value, best=BEST.value)
  if run.config.model.name != "gpt":
    raise common.UserError(f"{workdir} holds a {run.config.model.name!r} model; generation needs a gpt run")
  tokenizer = workdir_lib.load_asset(run.workdir, "tokenizer")
  model, _ = nnx.merge(run.structure.eval_graphdef, run.state)
  context = model.arch.max_len  # positions it was trained on; it does not slide a window past them
  sampler = sampling.Sampler(model, tokenizer, context)
  prompt = sampler.encode(PROMPT.value) or [sampler.end_id]
  if len(prompt) + MAX_NEW.value > context:
    raise common.UserError(f"the prompt ({len(prompt)} {'bytes' if tokenizer['type'] == 'bytes' else 'tokens'}) plus --max_new_tokens={MAX_NEW.value} exceed the model's "
                           f"context of {context} tokens; use --max_new_tokens={max(context - len(prompt), 0)} or less "
                           "(or a shorter prompt)")
  samples = sampler.sample(prompt, MAX_NEW.value, num_samples=NUM.value, temperature=TEMPERATURE.value,
                           top_k=TOP_K.value, seed=SEED.value, stop_at_eos=STOP_AT_EOS.value)
  for new in samples:
    sys.stdout.write(sampler.decode(prompt + new) + "\n\n")


if __name__ == "__main__":
  common.run(main)
