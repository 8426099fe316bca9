"""`flaxforge plan --search`: the settings of a run that fit a target, best predicted throughput first, each
as the --config overrides that make `flaxforge train` run it.

Every row is a compiled plan, so the compiles are rationed, as MaxText's estimator does (a largest-batch
search per memory setting):
  1. mesh layouts: for each tensor-parallel size (1, 2, 4, 8), the smallest FSDP size whose parameters,
     gradients and optimizer state (arithmetic on the abstract state: no compile) take at most half of each
     chip, else the largest that leaves any room; data parallelism takes the other chips (a multiple of the
     slices, so only it crosses slices);
  2. per layout, the largest per-device micro-batch that fits: one compile at 1, then one at the size its
     temporaries predict (powers of two, halved until it fits);
  3. when the configured global batch is larger than that, gradient accumulation reaches it;
  4. for a transformer (a config with model.remat), steps 2-3 again under each stronger activation
     checkpointing policy of REMAT_POLICIES, as long as the lighter one cannot run the configured batch
     without accumulation (remat trades recomputation for a larger micro-batch).
Settings the config fixes besides these (each a value of an entry in AXES) are swept as an outer product
around steps 1-4.
"""
import itertools
import sys

from flaxforge.core.errors import UserError
from flaxforge.planning import abstract, estimate, plan as plan_lib
from flaxforge.planning.targets import Target

# Further config fields the search sweeps, (field, values), e.g. ("model.dtype", ("float32", "bfloat16")).
AXES: tuple = ()
# model.remat's policies in the order step 4 tries them, lightest first.
REMAT_POLICIES = ("none", "dots", "full")
TENSOR_SIZES = (1, 2, 4, 8)
MAX_MICRO_BATCH = 256


def _with(config, overrides: dict):
  """A resolved copy of `config` with `overrides` ({"mesh.fsdp": 4, ...}) set."""
  config = config.copy_and_resolve_references()
  for field, value in overrides.items():
    *parents, name = field.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[name] = value
  return config


def flags(overrides: dict) -> list[str]:
  return [f"--config.{field}={value}" for field, value in overrides.items()]


def _divisors(n: int) -> list[int]:
  return [d for d in range(1, n + 1) if n % d == 0]


def layouts(config, target: Target, devices, log) -> list[dict]:
  """Mesh overrides worth compiling (step 1 of the module docstring), by arithmetic on the abstract state."""
  chips, out = target.num_chips, []
  for tensor in TENSOR_SIZES:
    if (chips // target.slices) % tensor:
      continue
    best = None
    for fsdp in _divisors(chips // target.slices // tensor):
      mesh = {"mesh.data": chips // tensor // fsdp, "mesh.fsdp": fsdp, "mesh.tensor": tensor}
      trial = _with(config, {**mesh, "data.batch_size": mesh["mesh.data"] * fsdp, "train.grad_accum_steps": 1})
      try:
        state = estimate.state_bytes(abstract.build(trial, devices))
      except UserError as e:  # this split does not suit the model (train would refuse it too)
        log(f"  skip data={mesh['mesh.data']} fsdp={fsdp} tensor={tensor}: {e}")
        continue
      need = plan_lib.held(state)
      if need < target.chip.hbm_bytes:
        best = mesh
      if need <= plan_lib.STATE_SHARE * target.chip.hbm_bytes:
        break
    if best and best not in out:
      out.append(best)
  return out


def _compiled(config, target: Target, devices, overrides: dict, log) -> plan_lib.Plan:
  plan = plan_lib.make(_with(config, overrides), target, devices)
  plan.overrides = flags(overrides)
  how = f"compiled in {plan.compile_seconds:.0f} s" if plan.compile_seconds else "not compiled"
  log(f"  {' '.join(plan.overrides)}: {'fits' if plan.fits else 'does not fit'} "
      f"(peak {plan.peak() / 2**30:.2f} GiB, {how})")
  return plan


def _largest_micro_batch(config, target: Target, devices, fixed: dict, log) -> list[plan_lib.Plan]:
  """Plans at per-device micro-batch 1 and at the largest that fits (step 2), all that were compiled.
  `fixed`: the overrides of this point of the search (its mesh layout and AXES values)."""
  shards = fixed["mesh.data"] * fixed["mesh.fsdp"]
  at = lambda micro: _compiled(config, target, devices,
                               {**fixed, "data.batch_size": micro * shards, "train.grad_accum_steps": 1}, log)
  one = at(1)
  if not one.fits:
    return [one]
  fixed_bytes = plan_lib.held(one.state)
  per_example = max(one.memory["peak"] - fixed_bytes, 1)
  micro = 1
  while micro * 2 <= MAX_MICRO_BATCH and fixed_bytes + micro * 2 * per_example <= target.chip.hbm_bytes:
    micro *= 2
  plans = [one]
  while micro > 1:
    plans.append(at(micro))
    if plans[-1].fits:
      break
    micro //= 2
  return plans


def search(config, target: Target, devices=None, log=lambda line: print(line, file=sys.stderr)) -> list:
  """Every compiled plan of the search (fitting or not); `ranked` orders the ones that fit."""
  devices = devices if devices is not None else target.devices()
  plans = []
  for values in itertools.product(*(values for _, values in AXES)):
    swept = dict(zip((field for field, _ in AXES), values))
    found_layouts = layouts(_with(config, swept), target, devices, log)
    if not found_layouts:  # the state fills every chip at any split: one plan, fully sharded, says so
      fsdp = target.num_chips // target.slices
      overrides = {**swept, "mesh.data": target.slices, "mesh.fsdp": fsdp, "mesh.tensor": 1,
                   "data.batch_size": target.num_chips, "train.grad_accum_steps": 1}
      plans.append(_compiled(config, target, devices, overrides, log))
    remats = [{"model.remat": r} for r in REMAT_POLICIES] if "remat" in config.model else [{}]
    for mesh in found_layouts:
      for remat in remats:  # step 4
        fixed = {**swept, **mesh, **remat}
        found = _largest_micro_batch(config, target, devices, fixed, log)
        plans += found
        fitting = [p.batch_size for p in found if p.fits]
        wanted = config.data.batch_size
        if fitting and wanted > max(fitting) and wanted % max(fitting) == 0:  # step 3: accumulation
          overrides = {**fixed, "data.batch_size": wanted, "train.grad_accum_steps": wanted // max(fitting)}
          plans.append(_compiled(config, target, devices, overrides, log))
        if fitting and max(fitting) >= wanted:
          break
  return plans


def ranked(plans: list, batch_size: int = 0) -> list:
  """The plans that fit, best predicted tokens/s (or examples/s) first; among equal predictions, those that
  train the configured global batch `batch_size` first (a smaller batch trains another run), then the smaller
  peak."""
  rate = lambda p: p.roofline.get("tokens_per_s", p.roofline["examples_per_s"])
  return sorted((p for p in plans if p.fits and p.roofline),
                key=lambda p: (-rate(p), p.batch_size != batch_size, p.peak()))
