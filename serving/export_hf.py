"""A trained run as a Hugging Face directory: the restored model's body (LoRA adapters merged into it) in
the family's own layout, and the run's stored tokenizer, so `transformers` loads what the run learned."""
import os

from flax import nnx

from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.data import text
from flaxforge.models import gpt, hf, lora
from flaxforge.trainer import restore, workdir as workdir_lib

# The assets in which a run keeps a pretrained tokenizer (`text.PretrainedEncoder`'s JSON), and whether the
# run encodes whole documents with it (a language model: lm_text.codec drops the stored truncation and
# padding) rather than truncating and padding to data.seq_len (a classifier).
TOKENIZER_ASSETS = {"text_encoder": False, "tokenizer": True}


def export_workdir(workdir: str, out: str, *, step: int | None = None, best: bool = False, dtype: str = "auto",
                   max_shard_size="5GB") -> dict:
  """Writes `out` (config.json, model.safetensors or its shards and index, hf.MARKER, tokenizer.json when
  the run has a pretrained tokenizer) from the checkpoint at `step` (default the latest), in `dtype` (auto:
  the base model's) and shards of at most `max_shard_size` (hf.export); returns {"out", "step", "files"} (the
  file names). A classification head has no `BertModel`/decoder equivalent and stays out; BERT's pooler, which no
  flaxforge classifier trains, and the bos/eos/pad token ids are taken from the pretrained directory when it
  is still there (the ids from the run's tokenizer otherwise). Raises UserError for a model with no Hugging
  Face family, or an `out` that is the run's base model or holds files and is not an earlier Hugging Face
  export (e.g. the run itself)."""
  run = restore.restore(workdir, step=step, best=best, model_only=True)
  base = paths.expand(run.config.model.get("pretrained", "") or "") or None
  if base and os.path.realpath(out) == os.path.realpath(base):  # a base that is itself an earlier export
    raise UserError(f"--out={out} is the run's base model, which resume, eval and LoRA read again; pass "
                    "another --out folder")
  model, _ = nnx.merge(run.structure.eval_graphdef, run.state)
  model = lora.merged(model)
  files, token_ids = {}, {}
  tokenizer, pad_id = _tokenizer(run.workdir)
  if tokenizer is not None:
    files["tokenizer.json"] = tokenizer.to_str(pretty=True)
    token_ids = _token_ids(tokenizer, pad_id, decoder=isinstance(model, gpt.GPT))
  out = hf.export(model, out, files=files, base=base, token_ids=token_ids,
                  source={"workdir": str(run.workdir), "step": run.step}, dtype=dtype, max_shard_size=max_shard_size)
  return {"out": out, "step": run.step, "files": sorted(os.listdir(out)) if os.path.isdir(out) else []}


def _tokenizer(workdir):
  """The run's pretrained tokenizer (`tokenizers.Tokenizer`) set up as the run encodes, and its padding id;
  (None, None) for a run without one (a fitted word vocabulary, bytes)."""
  for name, whole_documents in TOKENIZER_ASSETS.items():
    try:
      stored = workdir_lib.load_asset(workdir, name)
    except UserError:
      continue
    if stored.get("type") != "hf_tokenizer":
      break
    encoder = text.encoder_from_json(stored)
    tokenizer = encoder.tokenizer.tokenizer
    if whole_documents:
      tokenizer.no_truncation()
      tokenizer.no_padding()
    return tokenizer, encoder.pad_id
  return None, None


def _token_ids(tokenizer, pad_id: int, *, decoder: bool) -> dict:
  """config.json's hf.TOKEN_IDS as the run's tokenizer gives them: its padding id; for a decoder that id is
  also end of text (finetune_lm joins documents and ends completions with it), and start of text is the
  token the tokenizer puts first (Llama's <s>), else that same end of text (GPT-2's <|endoftext|>)."""
  ids = {"pad_token_id": pad_id}
  if decoder:
    first = tokenizer.encode("").ids
    ids.update(bos_token_id=first[0] if first else pad_id, eos_token_id=pad_id)
  return ids
