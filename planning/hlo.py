"""Collectives in a compiled program's HLO text (`compiled.as_text()`, one device's program): how many of each
kind run per step and the bytes each moves into a chip.

Bytes moved per chip follow the ring algorithms (NCCL's and XLA's accounting), for a group of n devices and
a buffer of S bytes: all-gather (n-1)/n S of its gathered result, reduce-scatter (n-1)/n S of its input,
all-reduce 2 (n-1)/n S, all-to-all (n-1)/n S, collective-permute S. A collective inside a loop (gradient
accumulation's scan, model.scan_layers' scan over blocks) counts once per trip when the trip count is known:
XLA:GPU writes it (`known_trip_count`); the TPU compiler does not, and its loop condition is read instead (a
counter from 0 compared `LT` with one integer constant, as jax.lax.scan lowers); else once.
"""
import collections
import dataclasses
import math
import re

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")

_BYTES = {"pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "s32": 4, "u32": 4, "s64": 8,
          "u64": 8, "f16": 2, "bf16": 2, "f32": 4, "f64": 8, "c64": 8, "c128": 16, "f8e4m3fn": 1, "f8e5m2": 1,
          "f8e4m3fnuz": 1, "f8e5m2fnuz": 1, "f8e4m3b11fnuz": 1}
_ARRAY = re.compile(r"\b(" + "|".join(_BYTES) + r")\[([\d,]*)\]")
_HEADER = re.compile(r"^(ENTRY )?%?([\w.\-]+) .*\{\s*$")
_OP = re.compile(r"=\s*(.*?)\s(" + "|".join(KINDS) + r")(-start)?\(")
_CALLEES = re.compile(r"(?:calls|to_apply|body|condition|true_computation|false_computation)=%?([\w.\-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_TRIPS = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')
_CONDITION = re.compile(r"condition=%?([\w.\-]+)")
_CONSTANT = re.compile(r"= s32\[\]\S* constant\((\d+)\)")


@dataclasses.dataclass
class Collective:
  """One kind's total per step: how many run and the bytes they move into each chip."""
  count: int = 0
  bytes_moved: float = 0.0


def _array_bytes(shape_text: str) -> list[float]:
  """Bytes of each array in an HLO shape (an array or a tuple of them)."""
  return [_BYTES[dtype] * math.prod(int(d) for d in dims.split(",") if d) for dtype, dims in _ARRAY.findall(shape_text)]


def group_size(line: str, devices: int) -> int:
  """Devices in each replica group of a collective's HLO line; `devices` when its groups are all of them."""
  mesh = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", line)
  if mesh:
    sizes = dict(re.findall(r"'([^']+)'=(\d+)", mesh.group(1)))
    return math.prod(int(sizes[a]) for a in re.findall(r"'([^']+)'", mesh.group(2)) if a in sizes)
  iota = re.search(r"replica_groups=\[([\d,]+)\]<=", line)
  if iota:
    return int(iota.group(1).split(",")[-1])
  listed = re.search(r"replica_groups=\{\{([\d,]*)\}", line)
  if listed:
    return len([d for d in listed.group(1).split(",") if d])
  pairs = re.search(r"source_target_pairs=\{(.*?)\}\}?", line)  # collective-permute: one pair per device
  return 2 if pairs else devices


def moved(kind: str, sizes: list[float], n: int, start: bool = False) -> float:
  """Bytes into one chip for one collective (see the module docstring). `sizes`: the arrays of its result
  shape, which for an async `-start` of an all-gather or reduce-scatter is (operands, results) and for a
  collective-permute's (operand, result, context)."""
  if not sizes or n <= 1 and kind != "collective-permute":
    return 0.0
  share = (n - 1) / n
  if kind == "collective-permute":
    return sizes[0]
  if start and kind in ("all-gather", "reduce-scatter"):
    half = len(sizes) // 2
    operands, results = sum(sizes[:half]), sum(sizes[half:])
    return share * (results if kind == "all-gather" else operands)
  if kind == "reduce-scatter":
    return share * n * sum(sizes)  # its result is 1/n of its operand
  return (2 if kind == "all-reduce" else 1) * share * sum(sizes)  # all-gather: its result; all-to-all


def collectives(hlo_text: str, devices: int) -> tuple[dict[str, Collective], bool]:
  """({kind: Collective} per step, whether every loop's trip count was known) for one device's program."""
  computations, order, entry = collections.defaultdict(list), [], None
  current = None
  for line in hlo_text.splitlines():
    header = _HEADER.match(line)
    if header and not line.startswith(" "):
      current = header.group(2)
      order.append(current)
      entry = current if header.group(1) else entry
    elif current and line.startswith(" "):
      computations[current].append(line)
  runs = collections.Counter({entry: 1}) if entry else collections.Counter({name: 1 for name in order})
  known = True
  for name in reversed(order):  # HLO text defines a computation before any caller
    for line in computations[name]:
      trips = 1
      if " while(" in line:
        found = _TRIPS.search(line)
        count = int(found.group(1)) if found else _counted_to(computations, _CONDITION.search(line))
        trips, known = (count, known) if count else (1, False)
      callees = _CALLEES.findall(line) + [c.strip().lstrip("%") for b in _BRANCHES.findall(line)
                                          for c in b.split(",")]
      for callee in callees:
        is_body = f"body=%{callee}" in line or f"body={callee}" in line
        runs[callee] += runs[name] * (trips if is_body else 1)
  totals = {kind: Collective() for kind in KINDS}
  for name in order:
    for line in computations[name]:
      op = _OP.search(line)
      if not op or not runs[name]:
        continue
      kind = op.group(2)
      totals[kind].count += runs[name]
      totals[kind].bytes_moved += runs[name] * moved(kind, _array_bytes(op.group(1)), group_size(line, devices),
                                                     start=bool(op.group(3)))
  return totals, known


def _counted_to(computations: dict, condition) -> int:
  """N for a loop condition `counter < N` (its ROOT a compare, direction=LT, and one s32 constant); else 0."""
  body = computations.get(condition.group(1), []) if condition else []
  constants = [int(c) for line in body for c in _CONSTANT.findall(line)]
  root = next((line for line in body if line.lstrip().startswith("ROOT")), "")
  return constants[0] if len(constants) == 1 and " compare(" in root and "direction=LT" in root else 0
