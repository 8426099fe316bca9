"""A trained run as a Hugging Face directory: the restored model's body (LoRA adapters merged into it) in
the family's own layout, and the run's stored tokenizer, so `transformers` loads what the run learned."""
import jax
from etils import epath
from flax import nnx

from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.data import text
from flaxforge.models import hf, lora
from flaxforge.trainer import restore, workdir as workdir_lib


def export_workdir(workdir: str, out: str, *, step: int | None = None, best: bool = False) -> dict:
  """Writes `out` (config.json, model.safetensors, tokenizer.json when the run has a pretrained tokenizer)
  from the checkpoint at `step` (default the latest); returns {"out", "step", "files"} (the file names). A classification head has no
  `BertModel`/decoder equivalent and stays out; BERT's pooler, which no flaxforge classifier trains, is
  copied from the pretrained directory when it is still there. Raises UserError for a model with no Hugging
  Face family."""
  run = restore.restore(workdir, step=step, best=best)
  model, _ = nnx.merge(run.structure.eval_graphdef, run.state)
  model = lora.merged(model)
  try:
    encoder = text.encoder_from_json(workdir_lib.load_asset(run.workdir, "text_encoder"))
  except UserError:
    encoder = None
  out = hf.export(model, out, base=paths.expand(run.config.model.get("pretrained", "") or "") or None)
  if isinstance(encoder, text.PretrainedEncoder) and jax.process_index() == 0:
    encoder.tokenizer.save(out)
  return {"out": out, "step": run.step, "files": sorted(p.name for p in epath.Path(out).iterdir())}
