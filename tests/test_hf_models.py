"""Hugging Face converters against `transformers` in float32: tiny random BERT, GPT-2, Llama (GQA, llama3
RoPE scaling, sharded safetensors), Qwen2 (q/k/v biases, tied head), Mistral (a sliding window shorter than
the input), Qwen3 (q/k norms, its own head width), Gemma 2 (soft-caps, four norms, alternating windows) and
Gemma 3 (q/k norms, local and global RoPE), decoders on a padded batch with its attention mask; RoBERTa and
XLM-RoBERTa (positions after the padding index 1), DistilBERT and ViT (patches of a non-square image); the real
MiniLM, the export round trip, and loading straight into an 8-device FSDP x tensor mesh."""
import dataclasses
import functools
import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import ml_collections  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position
import tiny_hf  # pylint: disable=wrong-import-position
import torch  # pylint: disable=wrong-import-position
import transformers  # pylint: disable=wrong-import-position
from flax import nnx  # pylint: disable=wrong-import-position
from jax.sharding import PartitionSpec as P  # pylint: disable=wrong-import-position
from safetensors import safe_open  # pylint: disable=wrong-import-position

from flaxforge.core.errors import UserError  # pylint: disable=wrong-import-position
from flaxforge.models import bert, gpt, hf, registry, vit  # pylint: disable=wrong-import-position
from flaxforge.models.hf import layout  # pylint: disable=wrong-import-position
from flaxforge.trainer import mesh as mesh_lib  # pylint: disable=wrong-import-position

VOCAB = 99  # not a multiple of 128: the embedding rows are padded, and the padding must never show

CONFIGS = {
    "bert": lambda: transformers.BertModel(transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=16, type_vocab_size=2)),
    "gpt2": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=16, bos_token_id=0, eos_token_id=0)),
    "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, rope_theta=500000.0, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8})),
    "qwen2": lambda: transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, tie_word_embeddings=True)),
    **{family: functools.partial(tiny_hf.DECODERS[family], vocab_size=VOCAB, max_position_embeddings=16)
       for family in ("mistral", "qwen3", "gemma2", "gemma3")},
    # encoder and vision families
    "roberta": lambda: transformers.RobertaModel(transformers.RobertaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=16 + 2, type_vocab_size=1)),
    "xlm-roberta": lambda: transformers.XLMRobertaModel(transformers.XLMRobertaConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=16 + 2, type_vocab_size=1)),
    "distilbert": lambda: transformers.DistilBertModel(transformers.DistilBertConfig(
        vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=16)),
    "vit": lambda: transformers.ViTModel(transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=(8, 12),
        patch_size=4, num_channels=3)),
}
ENCODERS = ("bert", "roberta", "xlm-roberta", "distilbert")  # compared on hidden states of the real tokens
PAD = {"roberta": 1, "xlm-roberta": 1}  # the padding id, where it is not 0
DECODERS = [family for family in CONFIGS if family not in ENCODERS and family != "vit"]


def inputs(family, rows=2):
  """A fixed batch for `family`: (images float32 [rows, 8, 12, 3], None) for ViT, else `tokens`; 4 rows repeat
  the 2 reversed."""
  if family == "vit":
    return np.random.default_rng(0).normal(size=(rows, 8, 12, 3)).astype(np.float32), None
  ids, mask = tokens(PAD.get(family, 0))
  return (ids, mask) if rows == 2 else (np.concatenate([ids, ids[:, ::-1]]), np.concatenate([mask, mask[:, ::-1]]))


def tokens(pad=0):
  """A fixed [2, 12] batch; the second row ends in 4 padding tokens (id `pad`, attention mask 0)."""
  ids = np.random.default_rng(0).integers(pad + 1, VOCAB, (2, 12))
  mask = np.ones_like(ids)
  ids[1, 8:], mask[1, 8:] = pad, 0
  return ids, mask


def torch_out(model, ids, mask=None):
  with torch.no_grad():
    if ids.dtype == np.float32:  # images [B, H, W, C] as pixel_values [B, C, H, W]
      out = model(pixel_values=torch.tensor(ids.transpose(0, 3, 1, 2)))
    else:
      out = model(torch.tensor(ids), attention_mask=None if mask is None else torch.tensor(mask))
  return (out.logits if hasattr(out, "logits") else out.last_hidden_state).numpy()


def ours_out(model, ids):
  return np.asarray(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(ids, ids.dtype if ids.dtype == np.float32
                                                                       else jnp.int32)))


@pytest.fixture(scope="module", params=list(CONFIGS))
def saved(request, tmp_path_factory):
  """(family, a random transformers model in eval mode, the directory it saved itself to)."""
  return save(request.param, tmp_path_factory)


def save(family, tmp_path_factory, _made={}):  # pylint: disable=dangerous-default-value
  """`saved`'s value for `family`, made once per session."""
  if family in _made:
    return _made[family]
  torch.manual_seed(0)
  model = CONFIGS[family]().eval()
  with torch.no_grad():  # Hugging Face starts biases at 0 and norms at 1: randomise all, or they go untested
    for name, p in model.named_parameters():
      norm_scale = p.ndim == 1 and name.endswith("weight")
      p.copy_(torch.randn_like(p) * 0.2 + (1.0 if norm_scale else 0.0))
  path = str(tmp_path_factory.mktemp(family))
  # Llama is saved in shards, so model.safetensors.index.json is read too.
  shard = "20KB" if family == "llama" else "1GB"
  model.save_pretrained(path, safe_serialization=True, max_shard_size=shard)
  _made[family] = family, model, path
  return _made[family]


def compare(family, model, ours, ids, mask):
  """Max abs difference of logits (hidden states for encoders) over the real tokens of the padded batch, which
  transformers sees with its attention mask (padding on the right, as flaxforge pads: a decoder's real tokens
  never see it); ViT's hidden states at every position."""
  if family == "vit":
    return np.abs(torch_out(model, ids) - ours_out(ours, ids)).max()
  want, got = torch_out(model, ids, mask), ours_out(ours, ids)
  return np.abs(want - got)[mask.astype(bool)].max()


@pytest.mark.slow  # every family, against transformers on torch
def test_logits_match_transformers(saved):
  family, model, path = saved
  if family == "llama":
    assert os.path.exists(os.path.join(path, "model.safetensors.index.json"))
  ours = hf.load(path)
  ids, mask = inputs(family)
  assert compare(family, model, ours, ids, mask) <= 1e-4
  # and the comparison can fail: a perturbed weight shows (one before the MLP's nonlinearity: Gemma normalises
  # the MLP's output, so a scaled down projection would not show)
  mlp = ours.transformer.blocks[1].mlp
  kernel = (mlp.up if mlp.gate is None else mlp.gate).kernel
  kernel.set_value(kernel.get_value() * 1.01)
  assert compare(family, model, ours, ids, mask) > 1e-4


@pytest.mark.slow  # every family exported and read back
def test_export_round_trip(saved, tmp_path):
  family, model, path = saved
  ours = hf.load(path)
  hf.export(ours, str(tmp_path))
  # Every tensor comes back bit for bit under its own name (BERT's unused pooler stays behind)...
  original = layout.Checkpoint(path, hf.read_config(path).family.ANCHOR)
  with safe_open(os.path.join(tmp_path, "model.safetensors"), "numpy") as exported:
    assert {n for n in original.files if not n.startswith("pooler.")} == set(exported.keys())
    for name in exported.keys():
      np.testing.assert_array_equal(exported.get_tensor(name), original.slice(name)[:], err_msg=name)
  # ...and transformers loads the directory as the same model.
  again = type(model).from_pretrained(str(tmp_path)).eval()
  ids, mask = inputs(family)
  assert compare(family, again, ours, ids, mask) <= 1e-4


class CountingCheckpoint(layout.Checkpoint):
  """Counts the elements that reads take from the files."""
  read = 0

  def slice(self, name):
    inner = super().slice(name)

    class Counted:
      def get_shape(self):
        return inner.get_shape()

      def __getitem__(self, index):
        block = inner[index]
        CountingCheckpoint.read += block.size
        return block
    return Counted()


@pytest.mark.slow  # a sharded load on 8 devices per family
@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (fake) devices")
def test_sharded_load_reads_each_element_once_and_matches(saved, monkeypatch):
  family, _, path = saved
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  monkeypatch.setattr(layout, "Checkpoint", CountingCheckpoint)
  CountingCheckpoint.read = 0
  sharded = hf.load(path, shardings=lambda state: mesh_lib.state_shardings(state, mesh))
  # Each device's block is read from the file slices that hold it, replicas once: nothing twice.
  pretrained = hf.read_config(path)
  stored = sum(int(np.prod(t.shape)) * len(t.names) for t in pretrained.tensors().values())
  assert CountingCheckpoint.read == stored
  up = sharded.transformer.blocks[0].mlp.up.kernel.get_value()
  assert up.sharding.spec == P("fsdp", "tensor")
  assert up.addressable_shards[0].data.shape == (up.shape[0] // 2, up.shape[1] // 2)
  single = hf.load(path)
  ids = inputs(family, rows=4)[0]  # 4 rows: the batch splits over data x fsdp
  with jax.set_mesh(mesh):
    got = ours_out(sharded, jax.device_put(ids, mesh_lib.batch_sharding(mesh)))
  np.testing.assert_allclose(got, ours_out(single, ids), atol=1e-5)


@pytest.mark.slow  # the shared MiniLM
def test_minilm_matches_transformers(minilm):
  tokenizer = transformers.AutoTokenizer.from_pretrained(minilm)
  batch = tokenizer(["The space shuttle reached orbit.", "A short one", "Graphics cards and their drivers, "
                     "again and again."], padding=True, return_tensors="np")
  ids, mask = batch["input_ids"], batch["attention_mask"]
  assert (mask == 0).any()
  want = torch_out(transformers.AutoModel.from_pretrained(minilm).eval(), ids, mask)
  got = ours_out(hf.load(minilm), ids)
  assert np.abs(want - got)[mask.astype(bool)].max() <= 1e-4


@pytest.mark.slow  # a full load per family
def test_pretrained_config_builds_the_architecture_and_load_params_fills_it(saved):
  # The trainer's path: the registry builds model.pretrained's architecture, then load_params over its state;
  # a new classification head is left as initialised, a 'pooler' takes the checkpoint's where it has one.
  family, original, path = saved
  name = hf.read_config(path).model
  cfg = ml_collections.ConfigDict({"name": name, "pretrained": path, "pool": "pooler"})
  info = {"vocab_size": VOCAB, "seq_len": 12, "num_classes": 3, "pad_id": PAD.get(family, 0),
          "input_shape": [8, 12, 3]}
  model = registry.build(cfg, info, rngs=nnx.Rngs(0))
  head = np.asarray(model.head.kernel.get_value()) if name != "gpt" else None
  pooler = np.asarray(model.pooler.kernel.get_value()) if name != "gpt" else None
  nnx.update(model, hf.load_params(path, nnx.state(model, nnx.Param)))
  ids = inputs(family, rows=4)[0]
  body = {"bert": bert.Encoder.__call__, "gpt": gpt.GPT.__call__, "vit": vit.ViT.__call__}[name]
  got = np.asarray(nnx.jit(lambda m, x: body(m, x))(model, jnp.asarray(ids)))
  np.testing.assert_array_equal(got, ours_out(hf.load(path), ids))
  if head is not None:
    np.testing.assert_array_equal(model.head.kernel.get_value(), head)
    assert ours_out(model, ids).shape == (4, 3)
    # BERT's and ViT's classifiers pool through the checkpoint's pooler; RoBERTa's and DistilBERT's through a
    # new layer (classifier.dense, pre_classifier)
    want = original.pooler.dense.weight.detach().numpy().T if family in ("bert", "vit") else pooler
    np.testing.assert_array_equal(model.pooler.kernel.get_value(), want)


def test_bfloat16_checkpoint_loads_as_float32(tmp_path):
  torch.manual_seed(1)
  model = CONFIGS["llama"]().to(torch.bfloat16)
  model.save_pretrained(str(tmp_path), safe_serialization=True)
  ours = hf.load(str(tmp_path))
  kernel = ours.transformer.blocks[0].mlp.gate.kernel.get_value()
  assert kernel.dtype == jnp.float32
  np.testing.assert_array_equal(kernel, model.model.layers[0].mlp.gate_proj.weight.detach().float().numpy().T)


def test_config_mistakes_are_user_errors(tmp_path):
  with pytest.raises(UserError, match="config.json"):
    hf.read_config(str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5", "vocab_size": 10}))
  with pytest.raises(UserError, match="model_type 't5' is not supported"):
    hf.read_config(str(tmp_path))
  gpt2 = CONFIGS["gpt2"]().config.to_dict()
  (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in gpt2.items() if k not in ("n_head", "n_embd")}))
  with pytest.raises(UserError, match=r"config.json lacks n_embd, n_head; point model.pretrained at a complete"):
    hf.read_config(str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps(gpt2))
  with pytest.raises(UserError, match="model.safetensors"):
    hf.load(str(tmp_path))


@pytest.mark.parametrize("family,field,value", [
    ("roberta", "position_embedding_type", "relative_key"), ("xlm-roberta", "hidden_act", "relu"),
    ("distilbert", "sinusoidal_pos_embds", True), ("distilbert", "activation", "relu"),
    ("vit", "patch_size", 5), ("vit", "hidden_act", "quick_gelu")])
def test_a_config_field_we_cannot_honour_is_one_line_naming_it(tmp_path, family, field, value):
  config = {**CONFIGS[family]().config.to_dict(), field: value}
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(UserError) as refused:
    hf.read_config(str(tmp_path))
  message = str(refused.value)
  assert "\n" not in message and f"{field}={value!r}" in message and "not supported" in message, message


def test_config_is_read_once_while_unchanged(tmp_path, monkeypatch):
  (tmp_path / "config.json").write_text(json.dumps(CONFIGS["gpt2"]().config.to_dict()))
  opened, real_open = [], open

  def counting_open(file, *args, **kwargs):
    opened.append(str(file))
    return real_open(file, *args, **kwargs)
  monkeypatch.setattr("builtins.open", counting_open)
  first = hf.read_config(str(tmp_path))
  assert hf.read_config(str(tmp_path)) is first
  assert opened.count(str(tmp_path / "config.json")) == 1
  config = {**first.config, "n_layer": first.config["n_layer"] + 1}
  (tmp_path / "config.json").write_text(json.dumps(config))  # an edit is read again
  assert hf.read_config(str(tmp_path)).arch.num_layers == first.arch.num_layers + 1
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(UserError, match="is not JSON"):
    hf.read_config(str(tmp_path))


def test_export_of_a_model_without_a_transformer_is_one_line(tmp_path):
  with pytest.raises(UserError, match="this Linear model has no Hugging Face equivalent .* --format=artifact"):
    hf.export(nnx.Linear(2, 3, rngs=nnx.Rngs(0)), str(tmp_path / "out"))  # was an AttributeError
  assert not (tmp_path / "out").exists()


@pytest.mark.slow  # every decoder family against transformers
@pytest.mark.parametrize("family", DECODERS)
def test_left_padded_rows_with_a_key_mask_match_transformers(family, tmp_path_factory):
  # Padding on the left (as batched generation pads): the real tokens sit at later positions and must not see
  # the padding; transformers hides it with the attention mask, flaxforge's transformer with a key mask.
  _, model, path = save(family, tmp_path_factory)
  ids, mask = (a[:, ::-1].copy() for a in tokens())
  ours = hf.load(path)

  @nnx.jit
  def forward(m, x, keys):
    h, _ = m.transformer(x, jnp.arange(x.shape[1]), mask=keys[:, None, None, :], is_causal=True)
    return m._logits(h)  # pylint: disable=protected-access
  got = np.asarray(forward(ours, jnp.asarray(ids, jnp.int32), jnp.asarray(mask, bool)))
  real = mask.astype(bool)
  assert np.abs(torch_out(model, ids, mask) - got)[real].max() <= 1e-4
  # without the key mask, the padded row's real tokens see its padding and differ
  unmasked = np.asarray(forward(ours, jnp.asarray(ids, jnp.int32), jnp.ones(ids.shape, bool)))
  assert np.abs(torch_out(model, ids, mask) - unmasked)[1][real[1]].max() > 1e-3


@pytest.mark.slow  # four families against transformers
@pytest.mark.parametrize("family", ["mistral", "qwen3", "gemma2", "gemma3"])
def test_the_sliding_window_is_honoured(family, tmp_path_factory):
  # The tokens within the window agree with a model without it; later ones only match transformers with it.
  _, model, path = save(family, tmp_path_factory)
  ours = hf.load(path)
  window = max(ours.arch.windows)
  assert 0 < window < tokens()[0].shape[1]
  wide = tuple(1000 if w else 0 for w in ours.arch.windows)  # longer than the input (Gemma 3's local RoPE stays)
  unwindowed = gpt.GPT(dataclasses.replace(ours.arch, windows=wide), tie_embeddings=ours.lm_head is None,
                       rngs=nnx.Rngs(0))
  nnx.update(unwindowed, nnx.state(ours, nnx.Param))
  ids = tokens()[0]
  want, got, without = torch_out(model, ids), ours_out(ours, ids), ours_out(unwindowed, ids)
  assert np.abs(want - got).max() <= 1e-4
  np.testing.assert_allclose(without[:, :window], got[:, :window], atol=1e-5)
  assert np.abs(want - without)[:, window:].max() > 1e-2
