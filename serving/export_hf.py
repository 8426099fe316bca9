"""A trained run as a Hugging Face directory: the restored model (LoRA adapters merged into it) in the family's
own layout, and the run's stored tokenizer (and chat template) or image processing, so `transformers` loads
what the run learned. A classifier whose pooling transformers has becomes that family's `*ForSequenceClassification`
(`*ForImageClassification`), which `transformers.pipeline` runs as it is (models/hf `head_of`)."""
import json
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
  """Writes `out` from the checkpoint at `step` (default the latest), in `dtype` (auto: the base model's) and
  shards of at most `max_shard_size` (hf.export): config.json, model.safetensors or its shards and index,
  hf.MARKER; with the run's pretrained tokenizer, tokenizer.json (and for a classifier a tokenizer_config.json);
  for an image classifier, preprocessor_config.json. Returns {"out", "step", "files"} (the file names), and
  "note" (one line) when a classifier's pooling has no transformers class, so that its body alone was written.

  A classifier (model.pool='pooler' over an encoder, 'cls' over a ViT, any decoder classifier) is written
  with its head and the run's label names (id2label). A body's export takes BERT's (ViT's) pooler, which it
  does not train, from the pretrained directory when it is still there; the bos/eos/pad token ids come from
  there too (from the run's tokenizer otherwise). Raises UserError for a model with no Hugging Face family,
  or an `out` that is the run's base model or holds files and is not an earlier Hugging Face export (e.g. the
  run itself)."""
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
    if hasattr(model, "head"):  # pipeline("text-classification") loads it with AutoTokenizer
      files["tokenizer_config.json"] = _json(_tokenizer_config(tokenizer, pad_id))
    token_ids = _token_ids(tokenizer, pad_id, decoder=isinstance(model, gpt.GPT))
  if "input_scale" in run.info and len(run.info.get("input_shape", ())) == 3:
    files["preprocessor_config.json"] = _json(_image_processor(run.info))
  files.update(_chat_files(run.workdir))
  out = hf.export(model, out, files=files, base=base, token_ids=token_ids, labels=run.info.get("label_names"),
                  source={"workdir": str(run.workdir), "step": run.step}, dtype=dtype, max_shard_size=max_shard_size)
  result = {"out": out, "step": run.step, "files": sorted(os.listdir(out)) if os.path.isdir(out) else []}
  note = hf.head_note(model)
  return {**result, "note": note} if note else result


def _json(value) -> str:
  return json.dumps(value, indent=2, ensure_ascii=False)


def _tokenizer_config(tokenizer, pad_id: int) -> dict:
  """tokenizer_config.json for transformers' AutoTokenizer: tokenizer.json's own pipeline as it is
  (PreTrainedTokenizerFast, not a family's class that rebuilds one), the run's padding token, padding on the
  right, and model_max_length the run's sequence length (what `truncation=True` cuts a text to)."""
  config = {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": tokenizer.id_to_token(pad_id),
            "padding_side": "right"}
  length = (tokenizer.truncation or {}).get("max_length")
  return {**config, "model_max_length": length} if length else config


def _image_processor(info: dict) -> dict:
  """preprocessor_config.json (transformers' ViTImageProcessor) that prepares an image as the run did: RGB,
  resized (bilinear) to the run's input shape, then `pixels * input_scale + input_offset` per channel, which
  is (pixels / 255 - image_mean) / image_std with image_std = 1 / (255 input_scale) and image_mean =
  -input_offset * image_std."""
  height, width, _ = info["input_shape"]
  std = [1 / (255 * s) for s in info["input_scale"]]
  return {"image_processor_type": "ViTImageProcessor", "do_convert_rgb": True, "do_resize": True,
          "size": {"height": int(height), "width": int(width)}, "resample": 2, "do_rescale": True,
          "rescale_factor": 1 / 255, "do_normalize": True,
          "image_mean": [-o * s for o, s in zip(info["input_offset"], std)], "image_std": std}


def _chat_files(workdir) -> dict:
  """A chat run's template (chat_template.jinja) and its special tokens (tokenizer_config.json), as
  transformers saves them; {} for other runs."""
  try:
    stored = workdir_lib.load_asset(workdir, "chat_template")
  except UserError:
    return {}
  return {"chat_template.jinja": stored["source"], "tokenizer_config.json": json.dumps(stored["special_tokens"])}


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
