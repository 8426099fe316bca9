"""RoBERTa and XLM-RoBERTa encoders (`RobertaModel`, `XLMRobertaModel`): BERT's tensors and maths (bert.py),
except that learned positions start after the padding index: a token at t reads row pad_token_id + 1 + t
(transformers' `create_position_ids_from_input_ids`, for rows padded on the right as flaxforge's are), so
max_position_embeddings (514 for the base models) leaves pad_token_id + 1 rows fewer for a sequence."""
import dataclasses

from flaxforge.core.errors import UserError
from flaxforge.models import bert as bert_model
from flaxforge.models.hf import bert
from flaxforge.models.hf.layout import Head, dense
from flaxforge.models.transformer import Arch

MODEL_TYPES = ("roberta", "xlm-roberta")
MODEL = "bert"
ANCHOR = bert.ANCHOR
EXPORT_PREFIX = ""  # RobertaModel's own names; RobertaFor* models wrap them in "roberta."
CLASSIFIER_POOL = "pooler"  # RobertaClassificationHead: out_proj(tanh(dense([CLS])))
KEPT_FROM_BASE = bert.KEPT_FROM_BASE  # RobertaModel's pooler, which its classifier does not use
_NAMES = {"roberta": "Roberta", "xlm-roberta": "XLMRoberta"}


@dataclasses.dataclass(frozen=True)
class Config(bert.Config):
  """BERT's fields, with transformers' RobertaConfig defaults for these."""
  model_type: str = "roberta"
  pad_token_id: int = 1


def arch(c: Config, padded_vocab: int) -> tuple[Arch, bool]:
  a, _ = bert.arch(c, padded_vocab)
  offset = c.pad_token_id + 1
  if c.max_position_embeddings <= offset:
    raise UserError(f"max_position_embeddings={c.max_position_embeddings} leaves no position after "
                    f"pad_token_id={c.pad_token_id}; RoBERTa-family positions start at pad_token_id + 1")
  return dataclasses.replace(a, max_len=c.max_position_embeddings - offset, position_offset=offset,
                             model_type=c.model_type), False


def matches(a: Arch, tie: bool) -> bool:
  return a.model_type in MODEL_TYPES


def config_json(a: Arch, tie: bool) -> dict:
  return {**bert.config_json(a, tie), "architectures": [f"{_NAMES[a.model_type]}Model"], "model_type": a.model_type,
          "max_position_embeddings": a.max_len + a.position_offset, "pad_token_id": a.position_offset - 1}


def build(a: Arch, tie: bool, *, rngs):
  return bert_model.Encoder(a, pad_id=a.position_offset - 1, rngs=rngs)


def tensors(a: Arch, tie: bool) -> dict:
  return bert.tensors(a, tie)


def classifier(a: Arch, num_classes: int) -> Head:
  """RobertaForSequenceClassification (XLMRoberta...): out_proj(tanh(dense(dropout([CLS]))))."""
  return Head(f"{_NAMES[a.model_type]}ForSequenceClassification", "roberta.", {
      **dense(("pooler",), "classifier.dense", a.embed_dim, a.embed_dim),
      **dense(("head",), "classifier.out_proj", a.embed_dim, num_classes)})
