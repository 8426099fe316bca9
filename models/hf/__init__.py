"""Hugging Face checkpoints in and out: a directory with `config.json` and `model.safetensors` (or the
shards of `model.safetensors.index.json`) becomes a flaxforge model, read with the `safetensors` library
(no `transformers` or PyTorch), and a model goes back to such a directory.

Families, by config.json's model_type: bert (BertModel and the checkpoints that share it, e.g. MiniLM;
loaded as `bert.Encoder`), gpt2, llama/mistral/qwen2/qwen3, gemma2 and gemma3_text (loaded as `gpt.GPT`);
roberta, xlm-roberta and distilbert (`bert.Encoder`), vit (`vit.ViT`). Each family's module holds its
architecture mapping and its table of tensors (`layout.Tensor`: names, shape, transposition), and for export
its classifier: the model.pool that transformers' `*ForSequenceClassification` computes (CLASSIFIER_POOL; a
decoder's last token) and that class's tensors (`classifier`, a `layout.Head`; a decoder's is its bias-free
`score`). A config.json value a family cannot honour is refused in one line that names it.

Weights go straight into their shardings one parameter at a time: `jax.make_array_from_callback` asks
for each addressable device's block, and that block is read from the slices of the files that hold it,
so no host reads, and no device holds, more than its share. Export writes shards (shards.py) in the
checkpoint's own dtype, one shard in host memory at a time.
"""
import dataclasses
import functools
import hashlib
import json
import os
import typing

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from flaxforge.core import paths
from flaxforge.core.errors import UserError
from flaxforge.models import gpt, quant
from flaxforge.models.hf import bert, gpt2, layout, llama
from flaxforge.models.hf import gemma2, gemma3, shards
from flaxforge.models.hf import distilbert, roberta, vit  # encoder and vision families
from flaxforge.models.transformer import Arch

FAMILIES = (bert, gpt2, llama)
FAMILIES += (gemma2, gemma3)  # decoders (issue 29)
FAMILIES += (roberta, distilbert, vit)  # encoder and vision families (issue 29)
VOCAB_MULTIPLE = 128  # embedding rows padded to a multiple, so the 'vocab' axis shards evenly
MARKER = "flaxforge_export.json"  # what identifies an earlier export (transformers ignores the file)
# Special tokens config.json names; without them transformers assumes the family's defaults (GPT-2's 50256,
# outside a smaller vocabulary) and generate() does not stop at end of text.
TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """What a Hugging Face directory's config.json says: the family module, the Arch, whether the LM head
  shares the token embedding, and config.json itself. models/registry.py hands it to bert's and gpt's
  `from_config` for a config with model.pretrained set."""
  family: object
  arch: Arch
  tie_embeddings: bool
  config: dict = dataclasses.field(compare=False)

  @property
  def model(self) -> str:
    """models/registry.py's name of the model built on this family: bert, gpt or vit."""
    return getattr(self.family, "MODEL", "gpt")

  def build(self, *, rngs) -> nnx.Module:
    """The model with random weights: `bert.Encoder`, `gpt.GPT` or `vit.ViT`."""
    return self.family.build(self.arch, self.tie_embeddings, rngs=rngs)

  def tensors(self) -> dict:
    """{parameter path in the model: layout.Tensor}."""
    return self.family.tensors(self.arch, self.tie_embeddings)


def read_config(path) -> Pretrained:
  """Raises UserError when `path` has no config.json or its model_type is not supported. Answers again from
  memory while config.json's inode, size and mtime are unchanged (start-up asks several times)."""
  file = os.path.join(path, "config.json")
  try:
    stat = os.stat(file)
  except OSError as e:
    raise UserError(f"cannot read {file} ({e.strerror}); point model.pretrained at a Hugging Face model "
                    "directory") from None
  pretrained = _read_config(file, (stat.st_ino, stat.st_size, stat.st_mtime_ns))
  layout.check_index(path)  # a shard missing is said before anything is created
  return pretrained


@functools.lru_cache(maxsize=16)
def _read_config(file: str, version: tuple) -> Pretrained:
  del version  # part of the cache key only
  try:
    with open(file) as f:
      config = json.load(f)
  except OSError as e:
    raise UserError(f"cannot read {file} ({e.strerror}); point model.pretrained at a Hugging Face model "
                    "directory") from None
  except ValueError as e:
    raise UserError(f"{file} is not JSON ({e}); point model.pretrained at a Hugging Face model directory") from None
  kind = config.get("model_type")
  family = next((f for f in FAMILIES if kind in f.MODEL_TYPES), None)
  supported = ", ".join(t for f in FAMILIES for t in f.MODEL_TYPES)
  if family is None:
    raise UserError(f"{os.path.dirname(file)}: model_type {kind!r} is not supported; use one of: {supported}")
  read = _typed(family.Config, config, file)
  try:
    arch, tie = family.arch(read, -(-getattr(read, "vocab_size", 0) // VOCAB_MULTIPLE) * VOCAB_MULTIPLE)
  except UserError as e:  # a value the family cannot honour
    raise UserError(f"{file}: {e}; the model_types flaxforge converts: {supported}") from None
  return Pretrained(family, arch, bool(tie), config)


def _typed(cls, config: dict, file: str):
  """A family's `Config` from config.json's values (a null one takes the default, as an absent one does,
  unless the field may be None: Mistral's null sliding_window is no window, an absent one 4,096); UserError
  naming the fields without a default that it lacks."""
  nullable = lambda f: type(None) in typing.get_args(f.type)
  given = {f.name: config[f.name] for f in dataclasses.fields(cls)
           if config.get(f.name) is not None or (f.name in config and nullable(f))}
  missing = [f.name for f in dataclasses.fields(cls) if f.name not in given and f.default is dataclasses.MISSING]
  if missing:
    raise UserError(f"{file} lacks {', '.join(missing)}; point model.pretrained at a complete Hugging Face model "
                    "directory")
  return cls(**given)


def content_hash(path) -> str:
  """sha256 (hex) of a Hugging Face directory's weights: config.json and every safetensors file the
  checkpoint is made of, in name order (reads them whole)."""
  files = ["config.json"] + sorted(set(layout.Checkpoint(path, read_config(path).family.ANCHOR).files.values()))
  digest = hashlib.sha256()
  for name in files:
    digest.update(name.encode() + b"\0")
    with open(os.path.join(path, name), "rb") as f:
      for block in iter(lambda: f.read(1 << 24), b""):
        digest.update(block)
  return digest.hexdigest()


def load_params(path, state: nnx.State, shardings=None) -> nnx.State:
  """`state` (a model's nnx.State, abstract or concrete) with every parameter that the checkpoint holds
  replaced by its weights; others (a new classification head) are kept as they are. A classifier's `pooler`
(model.pool='pooler') takes the checkpoint's pooler where the family has one (BERT, ViT) and it is there.

  shardings: an nnx.State of NamedShardings like `state` (the trainer's `mesh.state_shardings`), or None
  for each leaf's own sharding (one device for abstract leaves). Values take each leaf's dtype. Raises
  UserError when a tensor is missing or its shape does not match config.json.
  """
  pretrained = read_config(path)
  checkpoint = layout.Checkpoint(path, pretrained.family.ANCHOR)
  shardings = {key: s.get_value() if isinstance(s, nnx.Variable) else s
               for key, s in (nnx.to_flat_state(shardings) if shardings is not None else ())}
  tensors, flat = pretrained.tensors(), []
  pooler = getattr(pretrained.family, "pooler", None)
  if pooler is not None:
    tensors.update({k: t for k, t in pooler(pretrained.arch).items() if all(map(checkpoint.has, t.names))})
  quantized = _Quantized(pretrained, checkpoint, dict(nnx.to_flat_state(state)))
  for key, leaf in nnx.to_flat_state(state):
    tensor = tensors.get(key) if isinstance(leaf, nnx.Param) else None
    if tensor is not None:
      leaf = leaf.replace(_place(checkpoint, tensor, leaf.get_value(), shardings.get(key)))
    elif isinstance(leaf, quant.QuantizedBase):
      leaf = leaf.replace(quantized.place(key, leaf.get_value(), shardings.get(key)))
    flat.append((key, leaf))
  return nnx.from_flat_state(flat)


class _Quantized:
  """A quantized base's storage (models/quant.py QuantizedDense: q and scale, or nf4's codes and absmax)
  from the checkpoint: each layer's kernel read whole on the host, quantized, and each stored array placed
  on its shardings. Layers come one at a time (a state's keys are sorted), so one kernel is held at once."""

  def __init__(self, pretrained, checkpoint, flat: dict):
    self.tensors, self.checkpoint, self.flat = pretrained.tensors(), checkpoint, flat
    self.full = None if not any(isinstance(v, quant.QuantizedBase) for v in flat.values()) else dict(
        nnx.to_flat_state(nnx.state(nnx.eval_shape(lambda: pretrained.build(rngs=nnx.Rngs(0))))))
    self.layer, self.stored = None, None

  def place(self, key, like, sharding):
    layer = key[:key.index("nf4")] if "nf4" in key else key[:-1]
    if layer != self.layer:
      shape = self.full[layer + ("kernel",)].get_value().shape
      kernel = layout.read_block(self.tensors[layer + ("kernel",)], shape, tuple(slice(0, n) for n in shape),
                                 self.checkpoint.slice).astype(np.float32)
      if "nf4" in key:
        stored = quant.quantize_nf4(kernel, double_quant=layer + ("nf4", "absmax_q") in self.flat)
      else:
        stored = quant.quantize_int8(kernel, len(shape) - self.flat[layer + ("scale",)].get_value().ndim)
      self.layer, self.stored = layer, {k: np.asarray(v) for k, v in stored.items()}
    value = self.stored[key[-1]]
    sharding = sharding or getattr(like, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def _place(checkpoint, tensor, like, sharding):
  for name in tensor.names:
    stored = tuple(checkpoint.slice(name).get_shape())
    if stored != tensor.shape:
      raise UserError(f"{checkpoint.path}: {name} has shape {stored}, config.json implies {tensor.shape}")
  if sharding is None:
    sharding = getattr(like, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.devices()[0])
  blocks = {}  # devices holding the same block (replicas) share one read

  def block(index):
    key = tuple(s.indices(n) for s, n in zip(index, like.shape))
    if key not in blocks:
      blocks[key] = layout.read_block_into(tensor, like.shape, index, checkpoint.slice, like.dtype)
    return blocks[key]

  return jax.make_array_from_callback(like.shape, sharding, block)


def load(path, *, shardings=None, dtype="float32") -> nnx.Module:
  """The model of a Hugging Face directory, with its weights: `bert.Encoder` (call it on tokens [B, T] ->
  hidden states [B, T, d]) or `gpt.GPT` (tokens -> logits [B, T, vocab]).

  shardings: None (one device) or a function from the model's abstract nnx.State to its shardings (e.g.
  `lambda s: mesh.state_shardings(s, mesh)`). dtype is the compute dtype; parameters stay float32.
  """
  pretrained = read_config(path)
  pretrained = dataclasses.replace(pretrained, arch=dataclasses.replace(pretrained.arch, dtype=jnp.dtype(dtype)))
  create = lambda: pretrained.build(rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(nnx.eval_shape(create), nnx.Param, ...)
  missing = set(k for k, _ in nnx.to_flat_state(params)) - set(pretrained.tensors())
  if missing:
    raise AssertionError(f"parameters without a Hugging Face tensor: {sorted(missing)}")
  # RNG state only (XLA drops the weights); compiled before the weights arrive, so its memory is not added
  rest = jax.jit(lambda: nnx.split(create(), nnx.Param, ...)[2])()
  params = load_params(path, params, shardings(params) if shardings else None)
  return nnx.merge(graphdef, params, rest)


def export(model: nnx.Module, out, *, files=None, base=None, token_ids=None, source=None, dtype: str = "auto",
           max_shard_size="5GB", labels=None) -> str:
  """Writes `model` (a `bert.Encoder`, `gpt.GPT` or `vit.ViT` of a supported family, or a classifier on one)
  as a Hugging Face directory that `transformers` loads: config.json and the weights in the family's own
  tensor names and layouts, in `dtype` (float32, bfloat16, float16; auto: the dtype `base` stores, else
  float32), as model.safetensors or, beyond `max_shard_size` (bytes, or a string such as '500MB', '5GB'),
  shards and their index (shards.py; one shard in host memory at a time); `files` ({file name: text}, e.g.
  tokenizer.json) and MARKER (JSON: `source`, e.g. the run's workdir and step). `out` must be new, empty or an
  earlier export, which is replaced (`paths.fresh_folder`).

  A classifier whose pooling transformers has (`head_of`) becomes that class (BertForSequenceClassification,
  LlamaForSequenceClassification, ViTForImageClassification, ...) with its pooler and head, `labels` (the class
  names by id; default LABEL_i) as id2label/label2id and single-label problem_type; any other classifier is
  written as its body alone (`head_note` says why).

  `base`: the Hugging Face directory the model was loaded from, whose tensors that flaxforge does not train
  (the family's KEPT_FROM_BASE, e.g. BERT's pooler) are copied unchanged into a body's export when it holds
  them, and whose config.json gives the TOKEN_IDS (bos/eos/pad). `token_ids`: {TOKEN_IDS key: id} for those
  that `base` does not give. Returns `out`. Every process gathers each parameter whole (a collective: call it
  on all processes); process 0 writes. Raises UserError when the architecture has no Hugging Face equivalent,
  the dtype or size is not one, or `out` is a non-empty folder that is not an earlier export."""
  family, arch, tie = _family(model)
  head = head_of(model)
  dtype_name = _stored_dtype(family, base) if dtype == "auto" else dtype
  dtype, max_bytes = shards.dtype_of(dtype_name), shards.parse_size(max_shard_size)
  flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))

  def gathered(key, tensor, prefix):  # {export name: array}, a collective; cast before layout.write's copy
    value = np.asarray(multihost_utils.process_allgather(flat[key].get_value(), tiled=True)).astype(dtype)
    return {name if name.startswith("lm_head.") else prefix + name: part
            for name, part in layout.write(tensor, value).items()}
  size = lambda t: int(np.prod(t.shape)) * len(t.names) * dtype.itemsize
  prefix = head.prefix if head else family.EXPORT_PREFIX
  parts = {key: (size(t), functools.partial(gathered, key, t, prefix))
           for key, t in family.tensors(arch, tie).items()}
  parts.update({key: (size(t), functools.partial(gathered, key, t, ""))  # full names
                for key, t in (head.tensors if head else {}).items()})
  for name, value in ({} if head else _kept_from_base(family, base)).items():
    parts[name] = (value.size * dtype.itemsize, lambda name=name, value=value: {name: value.astype(dtype)})
  config = family.config_json(arch, tie)
  if head:
    names = [str(n) for n in labels] if labels is not None else [f"LABEL_{i}" for i in range(_classes(model))]
    config.update(architectures=[head.architecture], id2label=dict(enumerate(names)),
                  label2id={n: i for i, n in enumerate(names)}, problem_type="single_label_classification")
  config.update({**(token_ids or {}), **_token_ids_of_base(base), "dtype": dtype_name})
  if head and "pad_token_id" in (token_ids or {}):  # the padding our classifier skipped to find its last token
    config["pad_token_id"] = token_ids["pad_token_id"]
  if arch.position_offset:  # RoBERTa's positions start after its padding index
    config["pad_token_id"] = arch.position_offset - 1
  folder = _fresh_folder_on_process_0(out, source)
  groups = shards.plan({key: size for key, (size, _) in parts.items()}, max_bytes)
  weight_map, total = {}, 0
  for file, group in zip(shards.file_names(len(groups)), groups):
    arrays = {name: array for key in group for name, array in parts[key][1]().items()}
    if folder is not None:
      shards.write_shard(folder, file, arrays)
    weight_map.update(dict.fromkeys(arrays, file))
    total += sum(a.nbytes for a in arrays.values())
    del arrays
  if folder is None:
    return out
  if len(groups) > 1:
    shards.write_index(folder, weight_map, total)
  (folder / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
  for name, content in (files or {}).items():
    (folder / name).write_text(content, encoding="utf-8")
  return out


def _family(model: nnx.Module):
  """(family, Arch, tie) of `model`: the family its architecture was read as (Arch.model_type), else the
  first whose maths it matches; a classifier counts as tied (it has no LM head). UserError when none does."""
  arch = getattr(getattr(model, "transformer", None), "arch", None)
  tie = (isinstance(model, gpt.GPT) and model.lm_head is None) or hasattr(model, "head")
  family = None
  if arch:
    family = (next((f for f in FAMILIES if arch.model_type and arch.model_type in f.MODEL_TYPES), None)
              or next((f for f in FAMILIES if f.matches(arch, tie)), None))
  if family is None:
    raise UserError(f"this {type(model).__name__} model has no Hugging Face equivalent (export --format=hf "
                    f"supports {', '.join(t for f in FAMILIES for t in f.MODEL_TYPES)} models, e.g. loaded from "
                    "Hugging Face); --format=artifact exports any run")
  return family, arch, tie


def _classes(model) -> int:
  return int(model.head.kernel.get_value().shape[-1])


def _pool(family) -> str:
  """The model.pool that the family's transformers classifier computes (a decoder's: its last token)."""
  return getattr(family, "CLASSIFIER_POOL", "last")


def head_of(model: nnx.Module) -> layout.Head | None:
  """The transformers classifier that computes what `model` computes: for a flaxforge classifier (a model
  with a `head`) whose pooling is its family's CLASSIFIER_POOL, the family's `classifier` (a decoder's:
  `score`, bias-free, on the last token, in the *ForCausalLM's *ForSequenceClassification twin); else None."""
  if not hasattr(model, "head"):
    return None
  family, arch, tie = _family(model)
  if getattr(model, "pool", None) != _pool(family):
    return None
  if hasattr(family, "classifier"):
    return family.classifier(arch, _classes(model))
  causal = family.config_json(arch, tie)["architectures"][0]
  name = causal.removesuffix("ForCausalLM").removesuffix("LMHeadModel") + "ForSequenceClassification"
  return layout.Head(name, family.EXPORT_PREFIX, {("head", "kernel"): layout.linear("score.weight", arch.embed_dim,
                                                                                      _classes(model))})


def head_note(model: nnx.Module) -> str | None:
  """One line for a classifier whose pooling no transformers class computes (its export is the body alone),
  naming the model.pool that has one; None when `export` writes the classifier whole, or for a body."""
  if not hasattr(model, "head") or head_of(model) is not None:
    return None
  family, arch, tie = _family(model)
  body = family.config_json(arch, tie)["architectures"][0]
  return (f"model.pool={model.pool!r} has no transformers classifier: exported the body as {body} without the "
          f"head; train with --config.model.pool={_pool(family)} for one that pipeline() runs")


def _fresh_folder_on_process_0(out, source):
  """Process 0: `out` made ready (`paths.fresh_folder`) with MARKER (JSON: `source`) written first, so an
  export cut short stays replaceable by the next one; other processes: None. A refusal on process 0 is
  raised on all."""
  folder, error = None, ""
  if jax.process_index() == 0:
    try:
      folder = paths.fresh_folder(out, MARKER)
      (folder / MARKER).write_text(json.dumps(source or {}, indent=2, sort_keys=True))
    except UserError as e:
      error = str(e)
  if jax.process_count() > 1 and multihost_utils.broadcast_one_to_all(np.int32(bool(error))):
    error = error or f"process 0 cannot write {out} (see its output)"
  if error:
    raise UserError(error)
  return folder


def _stored_dtype(family, base) -> str:
  """The dtype name (shards.DTYPES) that the directory `base` stores its weights in; float32 without one."""
  try:
    stored = layout.Checkpoint(base, family.ANCHOR).slice(family.ANCHOR).get_dtype() if base else "F32"
  except UserError:  # moved away, or not this family's checkpoint
    stored = "F32"
  return {"BF16": "bfloat16", "F16": "float16"}.get(stored, "float32")


def _token_ids_of_base(base) -> dict:
  """The TOKEN_IDS that the directory `base`'s config.json sets (not null); {} when it has none or is gone."""
  try:
    config = read_config(base).config if base else {}
  except UserError:  # moved away or unreadable: nothing to keep
    return {}
  return {key: config[key] for key in TOKEN_IDS if config.get(key) is not None}


def _kept_from_base(family, base) -> dict:
  """The family's KEPT_FROM_BASE tensors that the directory `base` holds, as float32 arrays by export name."""
  names = getattr(family, "KEPT_FROM_BASE", ())
  if not (base and names and os.path.isdir(base)):
    return {}
  try:
    checkpoint = layout.Checkpoint(base, family.ANCHOR)
  except UserError:  # not this family's checkpoint: nothing to keep
    return {}
  return {family.EXPORT_PREFIX + name: np.asarray(checkpoint.slice(name)[:], np.float32)
          for name in names if checkpoint.has(name)}
