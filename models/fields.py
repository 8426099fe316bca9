"""Every built-in model's config sections (core/config_fields.py), declared once, and which of them a model
name may use (`candidates`). JAX-free: `--help` and a bad value are answered before JAX starts."""
import dataclasses

from flaxforge.core.config_fields import POSITIVE, Section, count, field, fraction

_KERNEL_INITS = ("normal", "uniform", "zeros", "lecun_normal", "lecun_uniform", "xavier_normal", "xavier_uniform",
                 "glorot_normal", "glorot_uniform", "he_normal", "he_uniform")
# A transformer's size presets: (num_layers, embed_dim, num_heads, mlp_dim). 125m and 350m are GPT-2 small and
# medium, 1b is GPT-3 XL (1.3B); 'small' is the CPU preset, 'tiny' the test one.
PRESETS = {
    "tiny": (2, 64, 2, 256),
    "small": (4, 256, 4, 1024),
    "125m": (12, 768, 12, 3072),
    "350m": (24, 1024, 16, 4096),
    "1b": (24, 2048, 16, 8192),
}


@dataclasses.dataclass(frozen=True)
class Model(Section):
  SECTION, TITLE = "model", "model"
  name: str = field("mlp", "mlp, text_cnn, bag_of_words, bert, gpt, convnet, vit (a pretrained ViT), or your module "
                    "(my_models.net, path/to/net.py)")


@dataclasses.dataclass(frozen=True)
class MLP(Section):
  """models/mlp.py."""
  SECTION, TITLE = "model", "model"
  hidden: tuple = field((128, 64), "hidden layer widths", range=count(1))
  activation: str = field("relu", "activation of the hidden layers", choices=("relu", "sigmoid", "tanh", "gelu"))
  kernel_init: str = field("he_normal", "weight initialiser", choices=_KERNEL_INITS)
  bias_init: str = field("zeros", "bias initialiser", choices=("zeros", "normal", "uniform"))
  init_std: float = field(0.05, "standard deviation of the normal initialiser", range=POSITIVE)
  init_limit: float = field(0.05, "limit of the uniform initialiser", range=POSITIVE)
  dropout: float = field(0.1, "dropout rate", range=fraction())


@dataclasses.dataclass(frozen=True)
class TextCNN(Section):
  """models/text_cnn.py; the defaults are the seed's sizes."""
  SECTION, TITLE = "model", "model"
  embed_dim: int = field(16, "embedding width", range=count(1))
  conv1_filters: int = field(32, "first convolution's filters", range=count(1))
  conv1_kernel: int = field(7, "first convolution's width", range=count(1))
  pool: int = field(7, "max-pool window after the first convolution", range=count(1))
  conv2_filters: int = field(64, "second convolution's filters", range=count(1))
  conv2_kernel: int = field(7, "second convolution's width", range=count(1))
  dense: int = field(64, "hidden dense width", range=count(1))
  dropout: float = field(0.0, "dropout rate", range=fraction())


@dataclasses.dataclass(frozen=True)
class BagOfWords(Section):
  """models/bag_of_words.py."""
  SECTION, TITLE = "model", "model"
  embed_dim: int = field(128, "embedding width", range=count(1))
  hidden: int = field(0, "one hidden layer's width; 0 = none", range=count(0))
  dropout: float = field(0.3, "dropout rate", range=fraction())


@dataclasses.dataclass(frozen=True)
class ConvNet(Section):
  """models/convnet.py."""
  SECTION, TITLE = "model", "model"
  channels: tuple = field((32, 64), "channels of each stage (each stage halves the image)", range=count(1))
  convs_per_stage: int = field(1, "3x3 convolutions per stage", range=count(1))
  dense: int = field(128, "hidden dense width", range=count(1))
  dropout: float = field(0.3, "dropout rate", range=fraction())


@dataclasses.dataclass(frozen=True)
class TransformerShape(Section):
  """A from-scratch transformer's shape (models/transformer.py); a pretrained one takes its config.json's."""
  SECTION, TITLE = "model", "model"
  size: str = field("small", "size preset", choices=tuple(PRESETS))
  num_layers: int = field(0, "transformer blocks; 0 = the preset's", range=count(0))
  embed_dim: int = field(0, "model width; 0 = the preset's", range=count(0))
  num_heads: int = field(0, "attention heads; 0 = the preset's", range=count(0))
  num_kv_heads: int = field(0, "key/value heads (grouped-query attention); 0 = num_heads", range=count(0))
  mlp_dim: int = field(0, "MLP width in each block; 0 = the preset's", range=count(0))
  mlp_activation: str = field("gelu_tanh", "MLP activation", choices=("gelu_tanh", "gelu", "silu"))
  gated_mlp: bool = field(False, "a gated MLP: down(act(gate(x)) * up(x)) (SwiGLU with silu)")
  use_bias: bool = field(True, "biases in every dense layer")
  position: str = field("rope", "rotary or learned positions", choices=("rope", "learned"))
  norm: str = field("layer", "layer or RMS norm", choices=("layer", "rms"))
  max_len: int = field(0, "rows of the learned position table; 0 = the data's sequence length", range=count(0))
  vocab_multiple: int = field(128, "embedding rows are the vocabulary rounded up to this multiple", range=count(1))


@dataclasses.dataclass(frozen=True)
class TransformerCompute(Section):
  """How a transformer (from scratch or pretrained) computes (models/transformer.py)."""
  SECTION, TITLE = "model", "model"
  dtype: str = field("float32", "compute dtype: float32, or bfloat16 on TPU/GPU", choices=("float32", "bfloat16"))
  param_dtype: str = field("float32", "stored parameter dtype: float32 master weights (with bfloat16 compute on "
                           "TPU/GPU), or bfloat16 to halve them", choices=("float32", "bfloat16"))
  dropout: float = field(0.0, "dropout rate", range=fraction())
  attention_impl: str = field("auto", "attention kernel: auto, xla or cudnn (GPU)", choices=("auto", "xla", "cudnn"))
  remat: str = field("none", "activation checkpointing of each block: none, full (recompute all), dots (keep the "
                     "weight matmuls' outputs), offload (those to host memory)",
                     choices=("none", "full", "dots", "offload"))
  scan_layers: bool = field(False, "run the blocks as one jax.lax.scan over their parameters stacked in the step: "
                            "a deep model compiles in the time of one block and FSDP gathers one block's weights "
                            "at a time (checkpoints keep one entry per block)")


@dataclasses.dataclass(frozen=True)
class Pretrained(Section):
  SECTION, TITLE = "model", "model"
  pretrained: str = field("", "a Hugging Face model folder: its architecture and weights; '' = random init")


@dataclasses.dataclass(frozen=True)
class Encoder(Section):
  """An encoder classifier's pooling (models/bert.py, models/vit.py)."""
  SECTION, TITLE = "model", "model"
  pool: str = field("cls", "pool the [CLS] position, the mean over tokens, or [CLS] through the pooler as "
                    "transformers' BertForSequenceClassification (RoBERTa's, DistilBERT's) does", choices=(
                        "cls", "mean", "pooler"))


@dataclasses.dataclass(frozen=True)
class Decoder(Section):
  """A from-scratch GPT's output layer (models/gpt.py); a pretrained one takes its config.json's."""
  SECTION, TITLE = "model", "model"
  tie_embeddings: bool = field(True, "the output layer shares the token embedding")


@dataclasses.dataclass(frozen=True)
class LoRA(Section):
  """Low-rank adapters (models/lora.py; Hu et al. 2021)."""
  SECTION, TITLE = "model.lora", "LoRA"
  rank: int = field(0, "adapters' rank; 0 = train every weight", range=count(0))
  alpha: float = field(16.0, "scale alpha / rank", range=POSITIVE)
  targets: str = field("qkv,out", "comma-separated dense layers that get adapters (qkv, out, up, gate, down)")


@dataclasses.dataclass(frozen=True)
class BaseQuant(Section):
  """A LoRA run's frozen base stored quantized (QLoRA; models/quant.py)."""
  SECTION, TITLE = "model", "model"
  base_quant: str = field("none", "with LoRA, store the frozen base's dense kernels as int8 (per channel) or "
                          "nf4 (4-bit NormalFloat, QLoRA) and dequantize inside the matmul; none = as is",
                          choices=("none", "int8", "nf4"))


SECTIONS = (Model, MLP, TextCNN, BagOfWords, ConvNet, TransformerShape, TransformerCompute, Pretrained,
            Encoder, Decoder, LoRA, BaseQuant)
_TRANSFORMER = (TransformerShape, TransformerCompute, Pretrained, LoRA, BaseQuant)
_CANDIDATES = {
    "mlp": (MLP,),
    "text_cnn": (TextCNN,),
    "bag_of_words": (BagOfWords,),
    "convnet": (ConvNet,),
    "bert": _TRANSFORMER + (Encoder,),
    "gpt": _TRANSFORMER + (Decoder,),
    "vit": (TransformerCompute, Pretrained, LoRA, Encoder),
}


def candidates(name: str) -> tuple:
  """The sections model `name`'s fields may come from (an import-path model: only `Model`'s)."""
  return (Model,) + _CANDIDATES.get(name, ())
