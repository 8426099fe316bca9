"""One plan: a config's train step compiled for a target, its per-chip memory against the chip's, the verdict
(flaxforge's own comparison: XLA:GPU only warns), FLOPs, collectives and roofline throughput; for a run that
does not fit, the levers that would help most."""
import dataclasses
import math
import re

from flaxforge.models import lora
from flaxforge.planning import abstract, estimate, hlo
from flaxforge.planning.compile import Program, compile_step
from flaxforge.planning.targets import GiB, SHAPES_2D, SHAPES_3D, Target

# What a plan keeps free of the state when it says which larger target would hold it: room for activations.
STATE_SHARE = 0.5


@dataclasses.dataclass
class Plan:
  """A plan's findings; bytes are per chip unless named total. `to_json()` is what --out writes."""
  target: str
  chip: str
  chips: int
  slices: int
  hbm_per_chip: int
  mesh: dict
  batch_size: int
  grad_accum_steps: int
  seq_len: int
  fits: bool
  refused: str  # the TPU compiler's out-of-memory message, if it refused the program
  memory: dict | None  # the compiler's arguments / outputs / aliased / temporaries / peak
  state: dict  # parameters, trained_parameters, optimizer_state, batch, gradients_estimate
  total_state_bytes: int  # parameters, optimizer state and gradients of all chips together, unsharded
  flops_per_step: float
  flops_source: str
  compiler_cost: dict  # XLA's per-chip flops and bytes accessed (a loop body counted once)
  collectives: dict  # kind -> {"count", "bytes_moved"} per step
  roofline: dict | None
  compile_seconds: float
  levers: list = dataclasses.field(default_factory=list)
  overrides: list = dataclasses.field(default_factory=list)  # --config.FIELD=VALUE a search set

  def peak(self) -> float:
    """The per-chip peak; when the compiler refused, at least the state (what is known without it)."""
    if self.memory:
      return self.memory["peak"]
    return self.state["parameters"] + self.state["optimizer_state"] + self.state["batch"] + self.refused_temporaries()

  def refused_temporaries(self) -> float:
    """The temporaries the TPU compiler's refusal names ('HLO temporaries (30.46G)'), else 0."""
    found = re.search(r"temporaries \(([\d.]+)([KMGT])\)", self.refused)
    return float(found.group(1)) * 1024 ** "KMGT".index(found.group(2)) * 1024 if found else 0.0

  def to_json(self) -> dict:
    """A JSON-ready dict; an unknown number (NaN) is null."""
    def clean(value):
      if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
      if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
      return None if isinstance(value, float) and not math.isfinite(value) else value
    return clean(dataclasses.asdict(self))


def make(config, target: Target, devices=None) -> Plan:
  """Plans `config` on `target` (its devices: `target.devices()` unless given). UserError for bad input."""
  run = abstract.build(config, devices if devices is not None else target.devices())
  state = estimate.state_bytes(run)
  if held(state) > target.chip.hbm_bytes:
    program = Program(0.0)  # what the step must hold at once exceeds the chip: no compile needed to say so
  else:
    program = compile_step(run, target.chip.platform)
  memory = estimate.memory(program)
  fits = not program.refused and memory is not None and memory["peak"] <= target.chip.hbm_bytes
  flops, source = estimate.flops_per_step(run, program, target.num_chips)
  kinds, _ = hlo.collectives(program.hlo, target.num_chips) if program.hlo else ({}, True)
  plan = Plan(
      target=target.name, chip=target.chip.name, chips=target.num_chips, slices=target.slices,
      hbm_per_chip=target.chip.hbm_bytes, mesh=dict(run.mesh.shape), batch_size=config.data.batch_size,
      grad_accum_steps=config.train.grad_accum_steps, seq_len=int(run.info.get("seq_len", 0) or 0), fits=fits,
      refused=program.refused, memory=memory, state=state, total_state_bytes=estimate.total_bytes(run),
      flops_per_step=flops, flops_source=source, compiler_cost=program.cost,
      collectives={k: dataclasses.asdict(v) for k, v in kinds.items() if v.count},
      roofline=estimate.roofline(run, program, target, flops, sum(k.bytes_moved for k in kinds.values()))
      if program.hlo else None,
      compile_seconds=program.seconds)
  if not fits:
    plan.levers = levers(plan, config, target)
  return plan


def held(state: dict) -> int:
  """Bytes a chip holds at once at the least: the state, the batch and every gradient (the step checks the
  gradients' global norm before it updates any parameter)."""
  return state["parameters"] + state["optimizer_state"] + state["batch"] + state["gradients_estimate"]


def larger_target(plan: Plan, target: Target) -> str | None:
  """The flags of the smallest slice (or node) of the same chip where the parameters, gradients and optimizer
  state, fully sharded, take at most STATE_SHARE of each chip; None if even the largest is too small."""
  chip = target.chip
  counts = sorted(SHAPES_3D if chip.cores_per_chip == 2 else SHAPES_2D) if chip.platform == "tpu" else [8, 16, 32, 64]
  need = plan.total_state_bytes
  for n in counts:
    if n * target.slices > target.num_chips and need / (n * target.slices) <= STATE_SHARE * chip.hbm_bytes:
      return f"--target={chip.name}-{n * chip.cores_per_chip} --config.mesh.data={target.slices} --config.mesh.fsdp={n}"
  return None


def state_line(plan: Plan) -> str:
  """'parameters, gradients and optimizer state alone are 14.95 GiB a chip of its 15.75 GiB', and what
  they would be fully sharded when the mesh replicates them."""
  s = plan.state
  alone, dtypes = s["parameters"] + s["optimizer_state"] + s["gradients_estimate"], "/".join(s["dtypes"])
  line = (f"{dtypes} parameters, gradients and optimizer state alone are {alone / GiB:.2f} GiB a chip of its "
          f"{plan.hbm_per_chip / GiB:.2f} GiB")
  if plan.mesh["fsdp"] * plan.mesh["tensor"] < plan.chips:
    line += f" ({plan.total_state_bytes / plan.chips / GiB:.2f} GiB fully sharded over {plan.chips} chips)"
  return line


def levers(plan: Plan, config, target: Target) -> list[str]:
  """What would make the run fit, most effective first, as flags to add."""
  s, out = plan.state, []
  alone = s["parameters"] + s["optimizer_state"] + s["gradients_estimate"]
  sharded = plan.mesh["fsdp"] * plan.mesh["tensor"]
  state_bound = alone > STATE_SHARE * plan.hbm_per_chip
  if state_bound and sharded < plan.chips:
    out.append(f"shard the state over all {plan.chips} chips (--config.mesh.data={target.slices} "
               f"--config.mesh.fsdp={plan.chips // target.slices // plan.mesh['tensor']})")
  if state_bound and config.model.get("pretrained", None) and not lora.enabled(config.model) and \
      "lora" in config.model:
    out.append("train LoRA adapters only, the base frozen (--config.model.lora.rank=16)")
  if plan.total_state_bytes / plan.chips > STATE_SHARE * plan.hbm_per_chip:
    bigger = larger_target(plan, target)
    if bigger:
      out.append(f"a larger target, the state fully sharded in half of each chip ({bigger})")
  per_device = plan.batch_size // (plan.mesh["data"] * plan.mesh["fsdp"])
  if per_device > 1:
    accum = plan.grad_accum_steps * 2
    if per_device % accum == 0:
      out.append(f"the same batch in {accum} micro-batches (--config.train.grad_accum_steps={accum})")
    out.append(f"a smaller batch (--config.data.batch_size={plan.batch_size // 2})")
  remat = config.model.get("remat", None)
  if remat in ("none", "dots") and not state_bound:
    stronger = "dots" if remat == "none" else "full"
    out.append(f"recompute activations in the backward pass (--config.model.remat={stronger})")
  if plan.mesh["tensor"] < 8 and plan.chips % (plan.mesh["tensor"] * 2) == 0 and not state_bound:
    out.append(f"tensor parallelism splits activations (--config.mesh.tensor={plan.mesh['tensor'] * 2})")
  return out


def size(value: float) -> str:
  """Bytes in the largest binary unit below them: '1.52 GiB'."""
  unit, scale = next(((u, s) for u, s in (("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10)) if value >= s), ("B", 1))
  return f"{value / scale:.2f} {unit}"


def verdict_line(plan: Plan, search_hint: bool = True) -> str:
  """The one line a plan ends with: fits (peak, headroom), or does not fit (why, the levers and, with
  `search_hint`, --search)."""
  peak, hbm = plan.peak(), plan.hbm_per_chip
  if plan.fits:
    return f"fits: peak {size(peak)} of {size(hbm)} a chip ({size(hbm - peak)} headroom) on {plan.target}"
  s = plan.state
  if s["parameters"] + s["optimizer_state"] + s["gradients_estimate"] > 0.9 * hbm:
    why = state_line(plan)
  elif plan.refused:
    why = f"the TPU compiler refused it: {plan.refused.split(': ', 1)[-1].rstrip('.')}"
  else:
    why = f"peak {size(peak)} a chip exceeds its {size(hbm)}"
  levers = plan.levers + (["flaxforge plan --search finds the settings that fit"] if search_hint else [])
  return f"does not fit on {plan.target}: {why}" + (f"; levers: {'; '.join(levers)}" if levers else "")

