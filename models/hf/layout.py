"""Where each flaxforge parameter lies in a Hugging Face safetensors checkpoint, and the reads and writes
that follow: a block of a parameter (one device's shard) is read from the slices of the files that hold it.

PyTorch's `nn.Linear` stores [out, in] and flaxforge's kernels are [in, out...], so most entries are
transpositions; attention splits a flat `heads * head_dim` axis into [heads, head_dim], and a fused q/k/v
kernel stacks three Hugging Face tensors.
"""
import dataclasses
import json
import math
import os

import numpy as np
from safetensors import safe_open

from flaxforge.core.errors import UserError


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One flaxforge parameter as Hugging Face stores it.

  names: the Hugging Face tensors it is made of; several are stacked along our axis `stack`.
  shape: each Hugging Face tensor's shape.
  axes: per Hugging Face axis, our axes that it flattens, major first ((1,), (0,) is a transposition); ()
  for an axis of size 1 that we do not have (ViT's [1, 1, d] class token).
  An axis of ours that a Hugging Face axis holds alone may be longer (vocabulary rows padded so the axis
  shards evenly): the extra rows read as zeros and are dropped on export.
  """
  names: tuple
  shape: tuple
  axes: tuple
  stack: int | None = None


@dataclasses.dataclass(frozen=True)
class Head:
  """A classifier as a transformers `*ForSequenceClassification` (or `*ForImageClassification`) holds it.

  architecture: its class name (config.json's architectures).
  prefix: what its tensor names put before the body's (the family's base model's) names, e.g. "bert.".
  tensors: {our parameter path: Tensor} of the pooling layer and the head, by their full names.
  """
  architecture: str
  prefix: str
  tensors: dict


def vector(name, size):
  return Tensor((name,), (size,), ((0,),))


def table(name, rows, dim):
  """An embedding [rows, dim], stored as is."""
  return Tensor((name,), (rows, dim), ((0,), (1,)))


def linear(name, d_in, d_out):
  """A PyTorch Linear weight [out, in] as our kernel [in, out] (transposed)."""
  return Tensor((name,), (d_out, d_in), ((1,), (0,)))


def conv1d(name, d_in, d_out):
  """GPT-2's Conv1D weight, already [in, out] as our kernel."""
  return Tensor((name,), (d_in, d_out), ((0,), (1,)))


def layer_norm(ours: tuple, theirs: str, dim: int) -> dict:
  """A LayerNorm's weight and bias as our scale and bias: {path: Tensor}."""
  return {ours + ("scale",): vector(theirs + ".weight", dim), ours + ("bias",): vector(theirs + ".bias", dim)}


def dense(ours: tuple, theirs: str, d_in: int, d_out: int, kernel=linear) -> dict:
  """A dense layer's weight (laid out as `kernel` says: linear or conv1d) and bias: {path: Tensor}."""
  return {ours + ("kernel",): kernel(theirs + ".weight", d_in, d_out),
          ours + ("bias",): vector(theirs + ".bias", d_out)}


def heads_in(names, heads, head_dim, dim, bias=False):
  """PyTorch Linear weights [heads * head_dim, dim] (q, k or v) as our kernel [dim, (len(names),) heads,
  head_dim], several stacked on axis 1; their biases [heads * head_dim] as [(len(names),) heads, head_dim]."""
  stacked = len(names) > 1
  head_axes = (2, 3) if stacked else (1, 2)
  if bias:
    return Tensor(tuple(names), (heads * head_dim,), ((1, 2) if stacked else (0, 1),), 0 if stacked else None)
  return Tensor(tuple(names), (heads * head_dim, dim), (head_axes, (0,)), 1 if stacked else None)


def heads_out(name, heads, head_dim, dim):
  """A PyTorch Linear weight [dim, heads * head_dim] (the attention output) as our kernel [heads, head_dim,
  dim]."""
  return Tensor((name,), (dim, heads * head_dim), ((2,), (0, 1)))


def _runs(sizes, ranges):
  """The contiguous [start, stop) runs, in order, of the box `ranges` (one per sub-axis) within a
  row-major flat axis of sub-axis `sizes`."""
  (start, stop), inner = ranges[0], math.prod(sizes[1:])
  if all(tuple(r) == (0, s) for r, s in zip(ranges[1:], sizes[1:])):
    return [(start * inner, stop * inner)]
  return [(i * inner + a, i * inner + b) for i in range(start, stop) for a, b in _runs(sizes[1:], ranges[1:])]


def _gather(source, runs):
  """source[...] over the product of each axis's runs, concatenated in order."""
  for axis, axis_runs in enumerate(runs):
    if len(axis_runs) > 1:
      return np.concatenate([_gather(source, runs[:axis] + [[r]] + runs[axis + 1:]) for r in axis_runs], axis)
  return source[tuple(slice(a, b) for (a, b), in runs)]


def read_block(tensor: Tensor, shape, index, open_slice) -> np.ndarray:
  """Our parameter's block `index` (a tuple of slices over our `shape`), read from only the Hugging Face
  slices that hold it. open_slice(name) gives a safetensors slice object."""
  ranges = [s.indices(n)[:2] for s, n in zip(index, shape)]
  names = tensor.names if tensor.stack is None else tensor.names[slice(*ranges[tensor.stack])]
  order = [a for group in tensor.axes for a in group]
  blocks = []
  for name in names:
    runs, pads = [], []
    for extent, group in zip(tensor.shape, tensor.axes):
      if not group:  # a unit axis of theirs alone
        runs.append([(0, 1)])
        pads.append((0, 0))
        continue
      sub = [ranges[a] for a in group]
      if len(group) == 1:  # a padded axis reads what the file has, then zeros
        sub = [(min(sub[0][0], extent), min(sub[0][1], extent))]
      runs.append(_runs([extent] if len(group) == 1 else [shape[a] for a in group], sub))
      pads.append((0, ranges[group[0]][1] - ranges[group[0]][0] - (sub[0][1] - sub[0][0])) if len(group) == 1
                  else (0, 0))
    block = _gather(open_slice(name), runs)
    if any(after for _, after in pads):  # np.pad copies even when there is nothing to add
      block = np.pad(block, pads)
    block = block.reshape([ranges[a][1] - ranges[a][0] for a in order])
    blocks.append(block.transpose(np.argsort(order)))
  return blocks[0] if tensor.stack is None else np.stack(blocks, axis=tensor.stack)


def read_block_into(tensor: Tensor, shape, index, open_slice, dtype, chunk_bytes: int = 1 << 20) -> np.ndarray:
  """read_block's block as a new `dtype` array, read and converted a chunk of at most `chunk_bytes` (of
  `dtype`) at a time, so that besides the result the host holds one chunk, not a second copy of the block.
  Chunks split our axis that the Hugging Face tensor's leading axis holds: each covers a contiguous run of
  the file."""
  ranges = [s.indices(n)[:2] for s, n in zip(index, shape)]
  out = np.empty([stop - start for start, stop in ranges], dtype)
  axis = next(group[0] for group in tensor.axes if group)  # past a unit axis of theirs alone (ViT's [1, 1, d])
  rows = out.shape[axis]
  step = max(1, chunk_bytes // max(1, out.nbytes // max(rows, 1)))
  for start in range(0, rows, step):
    stop = min(start + step, rows)
    part = list(index)
    part[axis] = slice(ranges[axis][0] + start, ranges[axis][0] + stop)
    into = [slice(None)] * out.ndim
    into[axis] = slice(start, stop)
    out[tuple(into)] = read_block(tensor, shape, tuple(part), open_slice)
  return out


def write(tensor: Tensor, value: np.ndarray) -> dict:
  """Our whole parameter as its Hugging Face tensors: {name: array of tensor.shape}."""
  crop = [slice(None)] * value.ndim
  for extent, group in zip(tensor.shape, tensor.axes):
    if len(group) == 1:
      crop[group[0]] = slice(0, extent)
  value = value[tuple(crop)]
  if tensor.stack is None:
    parts = [value]
    order = [a for group in tensor.axes for a in group]
  else:
    parts = [np.take(value, k, axis=tensor.stack) for k in range(len(tensor.names))]
    order = [a - (a > tensor.stack) for group in tensor.axes for a in group]
  return {name: np.ascontiguousarray(part.transpose(order).reshape(tensor.shape))
          for name, part in zip(tensor.names, parts)}


INDEX = "model.safetensors.index.json"


def _weight_map(path) -> dict | None:
  """{tensor name: shard file} from `path`'s INDEX, or None without one; UserError for an unreadable index."""
  index = os.path.join(path, INDEX)
  if not os.path.exists(index):
    return None
  try:
    with open(index) as f:
      return dict(json.load(f)["weight_map"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise UserError(f"{index} cannot be read as a safetensors index ({e}); download the checkpoint again") from None


def check_index(path) -> None:
  """Raises UserError naming the first shard that `path`'s INDEX lists but the folder lacks (nothing to do
  without an index)."""
  files = _weight_map(path) or {}
  missing = sorted(f for f in set(files.values()) if not os.path.isfile(os.path.join(path, f)))
  if missing:
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    raise UserError(f"{os.path.join(path, INDEX)} lists the shard {missing[0]}{more}, which is not in {path}; "
                    "download the complete checkpoint")


class Checkpoint:
  """The safetensors files of a Hugging Face directory: `model.safetensors`, or the shards that
  `model.safetensors.index.json` lists. Tensor names may carry a wrapper's prefix (`bert.`, `model.`,
  `transformer.`); `anchor`, the name of a tensor every checkpoint of the family has, finds it.

  Each read opens its file anew (safetensors maps it into memory): pages read stay mapped, and counted in
  the process's memory, only while that read's slice is alive, not for the whole load."""

  def __init__(self, path, anchor: str):
    files = _weight_map(path)
    if files is not None:
      check_index(path)
    elif os.path.exists(os.path.join(path, "model.safetensors")):
      with safe_open(os.path.join(path, "model.safetensors"), "numpy") as f:
        files = dict.fromkeys(f.keys(), "model.safetensors")
    else:
      raise UserError(f"{path} has neither model.safetensors nor {INDEX}; point model.pretrained at a Hugging "
                      "Face directory saved with safetensors")
    self.path, self.files = path, files
    found = [name for name in files if name.endswith(anchor)]
    if not found:
      raise UserError(f"{path}: no tensor named like {anchor!r}; is config.json's model_type right?")
    self.prefix = found[0][:-len(anchor)]

  def _stored(self, name: str) -> str | None:
    return next((stored for stored in (self.prefix + name, name) if stored in self.files), None)

  def has(self, name: str) -> bool:
    """Whether the checkpoint holds `name` (with or without the wrapper's prefix)."""
    return self._stored(name) is not None

  def name(self, name: str) -> str:
    """The stored name of `name` (with the wrapper's prefix unless it is stored at the top level)."""
    stored = self._stored(name)
    if stored is not None:
      return stored
    raise UserError(f"{self.path} lacks the tensor {self.prefix + name!r}; the weights do not match "
                    "config.json")

  def slice(self, name: str):
    """A safetensors slice of `name` (get_shape(), get_dtype(), [index] -> numpy)."""
    stored = self.name(name)
    return safe_open(os.path.join(self.path, self.files[stored]), "numpy").get_slice(stored)
