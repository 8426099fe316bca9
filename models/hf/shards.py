"""A Hugging Face checkpoint written in shards, as transformers' `save_pretrained` lays them out:
`model.safetensors` when everything fits in one shard, else `model-00001-of-0000N.safetensors`... and
`model.safetensors.index.json` (`{"metadata": {"total_size"}, "weight_map": {tensor: file}}`).

Shards are planned from the tensors' sizes before any is gathered, then written one at a time, so the host
holds one shard (plus the parameter being converted), never the whole model.
"""
import json
import re

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

from flaxforge.core import paths
from flaxforge.core.errors import UserError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
# safetensors' dtype names (a slice's get_dtype()) and the export dtypes, as numpy dtypes
DTYPES = {"F32": np.float32, "BF16": ml_dtypes.bfloat16, "F16": np.float16,
          "float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(size) -> int:
  """Bytes from an int or a string such as '5GB' (10^9), '500MiB' (2^20) or '2000000', as transformers'
  max_shard_size reads them. UserError otherwise."""
  match = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B|B)?\s*", str(size), re.IGNORECASE)
  if not match or int(match.group(1)) <= 0:
    raise UserError(f"max_shard_size {size!r} is not a size; use a number of bytes or e.g. 500MB, 5GB, 2GiB")
  return int(match.group(1)) * _UNITS[(match.group(2) or "").upper()]


def plan(sizes: dict, max_bytes: int) -> list[list]:
  """Groups of `sizes`' keys (in order) whose bytes add up to at most max_bytes each: a new group starts when
  the next key would overflow the current one, and a key larger than max_bytes has a group of its own
  (huggingface_hub's split_state_dict_into_shards)."""
  groups, size = [[]], 0
  for key, nbytes in sizes.items():
    if groups[-1] and size + nbytes > max_bytes:
      groups.append([])
      size = 0
    groups[-1].append(key)
    size += nbytes
  return [g for g in groups if g]


def file_names(count: int) -> list[str]:
  return [SINGLE] if count == 1 else [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


def write_shard(folder, name: str, tensors: dict) -> None:
  """One shard file (tensors: {name: numpy array}), with the `pt` format metadata transformers expects."""
  save_file(tensors, str(folder / name), metadata={"format": "pt"})
  paths.usual_permissions(folder / name)


def write_index(folder, weight_map: dict, total_size: int) -> None:
  """The index of a checkpoint of several shards (weight_map: {tensor name: file name})."""
  index = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
  (folder / INDEX).write_text(json.dumps(index, indent=2))


def dtype_of(name: str):
  """The numpy dtype of a safetensors or export dtype name; UserError naming the choices otherwise."""
  if name not in DTYPES:
    raise UserError(f"dtype {name!r} is not supported; use float32, bfloat16 or float16")
  return np.dtype(DTYPES[name])
