"""A trained run's consumers restore its model alone: eval, predict, serve, export (both formats), explain and
generate of a full fine-tune read no optimizer state (Orbax's partial restore), counted in the array bytes
that TensorStore reads from the checkpoint; the model half they get is the one a full restore gives, and its
fingerprints are checked."""
import json
import os
import re
import shutil

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position
import tensorstore as ts  # pylint: disable=wrong-import-position

import tiny_hf  # pylint: disable=wrong-import-position
from tiny_hf import bert_dir, topics  # noqa: F401  pylint: disable=wrong-import-position,unused-import (fixtures)
from flaxforge import serving  # pylint: disable=wrong-import-position
from flaxforge.core.errors import UserError  # pylint: disable=wrong-import-position
from flaxforge.inference import explain, predict, sampling  # pylint: disable=wrong-import-position
from flaxforge.launch.configs import finetune_lm  # pylint: disable=wrong-import-position
from flaxforge.serving import export_hf  # pylint: disable=wrong-import-position
from flaxforge.trainer import evaluate, loop, restore  # pylint: disable=wrong-import-position


def _bytes_restored() -> int:
  """Array bytes TensorStore has read from checkpoints in this process: the decompressed contents of the OCDBT
  data files' records (a full restore of the tiny runs below counts the train state's bytes to within 0.1%)."""
  found = ts.experimental_collect_matching_metrics("/tensorstore/internal/riegeli/noncontiguous_bytes")
  return found[0]["values"][0]["value"] if found else 0


def _restoring(consume):
  """(consume()'s result, the checkpoint array bytes it read)."""
  before = _bytes_restored()
  out = consume()
  return out, _bytes_restored() - before


def _nbytes(tree) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(tree) if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key))


def _arrays(tree) -> list:
  return [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
          for x in jax.tree.leaves(tree)]


pytestmark = pytest.mark.slow  # whole fine-tuning runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory, bert_dir, topics):  # noqa: F811
  """Full fine-tunes (AdamW over every weight, no LoRA): a BERT classifier and a GPT-2 language model."""
  tmp = tmp_path_factory.mktemp("finetunes")
  short = {"train.num_steps": 4, "train.eval_every_steps": 4}
  loop.train(tiny_hf.config(tmp, bert_dir, topics, **short), str(tmp / "bert"))
  (tmp / "corpus.txt").write_text("\n".join(tiny_hf.TOPICS.values()) * 40)
  gpt2 = tiny_hf.save_gpt2(tmp / "gpt2", list(tiny_hf.TOPICS.values()))
  loop.train(tiny_hf.config(tmp, gpt2, tmp / "corpus.txt", base=finetune_lm, **{"data.batch_size": 8, **short}),
             str(tmp / "gpt2_run"))
  return {"classifier": str(tmp / "bert"), "lm": str(tmp / "gpt2_run")}


def test_consumers_of_a_full_finetune_read_no_optimizer_state(runs, tmp_path):
  classifier, lm = runs["classifier"], runs["lm"]
  consumers = {
      "eval": lambda: evaluate.evaluate_workdir(classifier, report_dir=str(tmp_path / "report")),
      "predict and serve": lambda: predict.Predictor.from_workdir(classifier),
      "explain": lambda: explain.Explainer.from_workdir(classifier),
      "export": lambda: serving.export(classifier, str(tmp_path / "artifact")),
      "export --format=hf": lambda: export_hf.export_workdir(classifier, str(tmp_path / "hf")),
      "generate": lambda: sampling.Sampler.from_workdir(lm),
  }
  measured = {}
  for run_dir in (classifier, lm):
    full, read = _restoring(lambda run_dir=run_dir: restore.restore(run_dir))  # as a resumed run restores
    model, optimizer = _nbytes(full.state[0]), _nbytes(full.state[1])
    assert optimizer > 1.9 * model  # AdamW: two moments per weight
    assert read >= model + optimizer, (read, model, optimizer)  # the count sees every array read
    measured[run_dir] = model, optimizer
  for name, consume in consumers.items():
    _, read = _restoring(consume)
    model, optimizer = measured[lm if name == "generate" else classifier]
    assert model <= read < model + optimizer / 100, (name, read, model, optimizer)


def test_the_model_half_equals_a_full_restores(runs):
  full = restore.restore(runs["classifier"])
  alone = restore.restore(runs["classifier"], model_only=True)
  assert alone.step == full.step and list(alone.state.keys()) == [0]
  for a, b in zip(_arrays(alone.state[0]), _arrays(full.state[0]), strict=True):
    np.testing.assert_array_equal(a, b)
  assert alone.structure.abstract.keys() == alone.state.keys()  # no optimizer was built either


def test_a_model_only_restore_checks_the_fingerprints_of_the_half_it_reads(runs, tmp_path):
  """A model array whose saved fingerprint disagrees is refused; an optimizer array's is not even read."""
  run_dir = tmp_path / "run"
  shutil.copytree(runs["classifier"], run_dir)
  step = restore.restore(str(run_dir), model_only=True).step
  meta_path = run_dir / "checkpoints" / str(step) / "meta" / "metadata"
  original = json.loads(meta_path.read_text())

  def altered(prefix: str):
    meta = json.loads(json.dumps(original))
    name = next(n for n in meta["fingerprint"] if n.startswith(prefix))
    meta["fingerprint"][name] ^= 1
    meta_path.write_text(json.dumps(meta))
    return name

  altered("1.opt_state.")
  assert restore.restore(str(run_dir), step=step, model_only=True).step == step
  with pytest.raises(UserError, match="do not match the fingerprint"):
    restore.restore(str(run_dir), step=step)  # a full restore reads (and checks) the optimizer half
  name = altered("0.")
  with pytest.raises(UserError, match=re.escape(f"is damaged (contents do not match the fingerprint saved with them: {name}")):
    restore.restore(str(run_dir), step=step, model_only=True)
