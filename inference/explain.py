"""Which tokens drove a prediction: integrated gradients on the token embeddings.

Integrated gradients (Sundararajan, Taly and Yan, "Axiomatic Attribution for Deep Networks", ICML 2017,
arXiv:1703.01365) attributes F(x) - F(x') to the input's coordinates as (x - x') times the average gradient
of F along the straight path from a baseline x' to x. Here x is each position's token embedding, x' the
padding token's embedding at every position (the padding baseline: the model still sees which positions
hold real tokens, but none of their content), and F the logit of the explained class. A token's attribution
is the sum over its embedding's coordinates; by completeness the attributions sum to
F(input) - F(baseline), up to the path integral's error (midpoint rule over `steps` points).

No model code changes: the model's token embedding (the first `nnx.Embed` in its graph whose table has at
least the vocabulary's rows) is swapped, in a merged copy, for a module that returns the interpolated
embeddings. Models may embed a permutation of their inputs (the bag of words sorts them); each embedded
position is matched back to the input position holding the same token (k-th occurrence to k-th occurrence).
"""
import collections
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flaxforge.core.errors import UserError
from flaxforge.inference import predict
from flaxforge.models import graph


@dataclasses.dataclass
class Attribution:
  ids: np.ndarray  # int32 [L]: the model input
  scores: np.ndarray  # float32 [L]: each position's attribution (0 at padding)
  target: int  # the explained class
  logit: float  # F(input)
  baseline_logit: float  # F(baseline)


def token_embedding_path(model, vocab_size: int) -> tuple:
  """The graph path of the model's token embedding; UserError if it has none."""
  for path, node in nnx.iter_graph(model):
    if isinstance(node, nnx.Embed) and node.num_embeddings >= vocab_size:
      return path
  raise UserError(f"the model has no nnx.Embed with at least {vocab_size} rows: explain needs a model that "
                  "embeds token ids")


class _Interpolated(nnx.Module):
  """embed(pad) + alpha * (embed(ids) - embed(pad)) + probe: the IG path point, and a zero `probe` whose
  gradient is the gradient with respect to the embeddings. Records the ids it was called with."""

  def __init__(self, embed, alpha, probe, seen: list, pad_id: int):
    self.embed, self._point = embed, (alpha, probe, seen, pad_id)

  def __call__(self, ids):
    alpha, probe, seen, pad_id = self._point
    seen.append(ids)
    base = self.embed(jnp.full_like(ids, pad_id))
    return base + alpha * (self.embed(ids) - base) + probe.astype(base.dtype)


def integrated_gradients(graphdef, state, inputs: np.ndarray, vocab_size: int, *, target: int | None = None,
                         steps: int = 64, pad_id: int = 0) -> Attribution:
  """IG of one model input (int token ids [L]) for class `target` (default: the predicted class), against
  the baseline of `pad_id`'s embedding at every position.

  `graphdef`, `state`: the model in eval mode, as `nnx.split` gives them (or the eval graphdef and the
  train state's model half). Raises UserError when the model embeds tokens more than once or embeds ids
  that are not a rearrangement of its input.
  """
  inputs = np.asarray(inputs, np.int32).reshape(1, -1)
  path = token_embedding_path(nnx.merge(graphdef, state), vocab_size)
  called, diff, logits = _probe(graphdef, state, inputs, path=path, pad_id=pad_id)
  target = int(np.argmax(logits)) if target is None else int(target)
  grads, end_logits = _path_gradients(graphdef, state, inputs, jnp.zeros(diff.shape, jnp.float32), path=path,
                                      target=target, steps=steps, pad_id=pad_id)
  per_call = (np.asarray(diff, np.float64) * np.asarray(grads, np.float64)).sum(-1).reshape(-1)
  scores = np.zeros(inputs.shape[1], np.float32)
  for j, i in enumerate(_match(np.asarray(called).reshape(-1), inputs[0])):
    scores[i] += per_call[j]
  return Attribution(inputs[0], scores, target, float(end_logits[1]), float(end_logits[0]))


def _run(graphdef, state, inputs, path, alpha, probe, pad_id):
  model = nnx.merge(graphdef, state)
  seen = []
  graph.replace(model, path, lambda embed: _Interpolated(embed, alpha, probe, seen, pad_id))
  logits = model(inputs)
  if len(seen) != 1:
    raise UserError(f"the model embeds its tokens {len(seen)} times per call; explain needs exactly one")
  return logits[0], seen[0]


@functools.partial(jax.jit, static_argnames=("graphdef", "path", "pad_id"))
def _probe(graphdef, state, inputs, *, path, pad_id):
  """The ids the embedding is called with, E[ids] - E[pad] at each called position, and the logits."""
  embed = graph.node_at(nnx.merge(graphdef, state), path)
  logits, ids = _run(graphdef, state, inputs, path, 1.0, jnp.zeros(()), pad_id)
  return ids, embed(ids) - embed(jnp.full_like(ids, pad_id)), logits


@functools.partial(jax.jit, static_argnames=("graphdef", "path", "target", "steps", "pad_id"))
def _path_gradients(graphdef, state, inputs, zero, *, path, target, steps, pad_id):
  """The mean gradient of logit[target] over the path's midpoints, and the logits at alpha = 0 and 1."""
  def logit(probe, alpha):
    return _run(graphdef, state, inputs, path, alpha, probe, pad_id)[0][target]

  alphas = (jnp.arange(steps, dtype=jnp.float32) + 0.5) / steps
  g = jax.lax.map(lambda a: jax.grad(logit)(zero, a), alphas, batch_size=min(steps, 16))
  return g.mean(0), jnp.stack([logit(zero, 0.0), logit(zero, 1.0)])


def _match(called: np.ndarray, inputs: np.ndarray) -> list[int]:
  """For each embedded id, the input position that holds it (k-th occurrence to k-th occurrence)."""
  where = collections.defaultdict(collections.deque)
  for i, token in enumerate(inputs.tolist()):
    where[token].append(i)
  try:
    return [where[token].popleft() for token in called.tolist()]
  except IndexError:
    raise UserError("the model embeds token ids that are not a rearrangement of its input; explain cannot "
                    "map attributions back to the text") from None


class Explainer:
  """Integrated gradients for a text classifier run: text -> predicted label and per-token attributions."""

  def __init__(self, predictor, graphdef, state):
    self.predictor, self.graphdef, self.state = predictor, graphdef, state
    self.encoder = getattr(predictor.encode, "text_encoder", None)
    if self.encoder is None:
      raise UserError("explain handles text classifiers (token attributions); this run's inputs are not text")

  @classmethod
  def from_workdir(cls, workdir: str, *, step: int | None = None, best: bool = False) -> "Explainer":
    predictor = predict.Predictor.from_workdir(workdir, step=step, best=best)
    model, _ = nnx.merge(predictor.run.structure.eval_graphdef, jax.device_get(predictor.run.state))
    return cls(predictor, *nnx.split(model))

  def explain(self, text: str, *, label: str | None = None, steps: int = 64) -> dict:
    """{text, label, probability, logit, baseline_logit, tokens: [{token, attribution}]} for the predicted
    class (or `label`); tokens in input order, padding and words outside the vocabulary left out."""
    labels = self.predictor.labels
    if label is not None and label not in labels:
      raise UserError(f"unknown label {label!r}; choose one of: {', '.join(labels)}")
    ids = self.predictor.encode([text])[0]
    pad = self.encoder.pad_id
    a = integrated_gradients(self.graphdef, self.state, ids, self.encoder.vocab_size, steps=steps, pad_id=pad,
                             target=None if label is None else labels.index(label))
    probs = self.predictor.probabilities([text])[0]
    return {"text": text, "label": labels[a.target], "probability": float(probs[a.target]), "logit": a.logit,
            "baseline_logit": a.baseline_logit,
            "tokens": [{"token": self.encoder.token(int(t)), "attribution": float(s)}
                       for t, s in zip(a.ids, a.scores) if t != pad]}
