"""A plan's numbers: per-chip memory (the compiler's, and the state's share told apart by arithmetic), the
verdict, FLOPs per step, collectives and a roofline step time with the MFU and throughput it implies.

Roofline (Williams et al. 2009, as applied to TPUs in "How to Scale Your Model", jax-ml.github.io/scaling-book):
step time = max(compute, HBM traffic, collectives), each alone at its peak rate and all overlapping
perfectly, so the MFU (model FLOPs / (step time x chips x peak)) it implies is an upper bound:
  compute     = max(model FLOPs, XLA's count of the compiled program) per step / (chips x peak FLOP/s); with
                model.scan_layers XLA counts the blocks' body once, so the model's FLOPs stand alone, times
                REMAT_RECOMPUTE for the policy's recomputation (which XLA's count of an unrolled step includes)
  HBM         = XLA's bytes accessed per chip / HBM bandwidth (x gradient-accumulation steps: XLA counts a
                loop body once, so this overcounts the optimizer update by that factor; with
                model.scan_layers it counts the blocks' body once: a lower bound, which the report says)
  collectives = bytes moved into a chip (planning/hlo.py) / half the chip's bidirectional interconnect
                bandwidth (cross-slice DCN traffic is taken at ICI speed: optimistic for --slices > 1)
"""
import math

import jax
from flax import nnx

from flaxforge.models import lora, quant, registry
from flaxforge.planning.abstract import AbstractRun
from flaxforge.planning.compile import Program
from flaxforge.planning.targets import Target


# Training FLOPs with the forward pass recomputed, over those without: 8N against 6N a token for model.remat
# 'full' (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", sec. 5);
# 'dots' keeps the weight matmuls' outputs and recomputes attention's scores and the elementwise ops,
# counted as nothing here.
REMAT_RECOMPUTE = {"full": 4 / 3}


def per_chip_bytes(leaves) -> int:
  """Bytes one device holds of ShapeDtypeStructs carrying NamedShardings (the largest shard)."""
  total = 0
  for x in leaves:
    shape = x.sharding.shard_shape(x.shape) if getattr(x, "sharding", None) is not None else x.shape
    itemsize = 8 if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x.dtype.itemsize
    total += math.prod(shape) * itemsize
  return total


def state_bytes(run: AbstractRun) -> dict:
  """Per-chip bytes of the state's parts, by arithmetic on its shapes and shardings: parameters (of which
  trained: the optimizer's; a quantized frozen base, model.base_quant, counts in its stored int8 or NF4
  bytes), optimizer state, the batch, and the gradients (one per trained parameter, in its dtype and
  sharding: an estimate of what the temporaries hold for them)."""
  model_half, optimizer_half = run.structure.abstract[0], run.structure.abstract[1]
  trained = lora.trainable(run.config.model)
  weights = nnx.filter_state(model_half, nnx.Any(nnx.Param, quant.QuantizedBase))
  return {
      "parameters": per_chip_bytes(jax.tree.leaves(weights)),
      "trained_parameters": per_chip_bytes(jax.tree.leaves(nnx.filter_state(model_half, trained))),
      "optimizer_state": per_chip_bytes(jax.tree.leaves(optimizer_half)),
      "batch": per_chip_bytes(jax.tree.leaves(run.batch)),
      "gradients_estimate": per_chip_bytes(jax.tree.leaves(nnx.filter_state(model_half, trained))),
      "dtypes": sorted({str(x.dtype) for x in jax.tree.leaves(weights)}),
  }


def total_bytes(run: AbstractRun) -> int:
  """Bytes of the parameters, optimizer state and gradients (one per trained parameter) of all chips
  together, unsharded: what the chips must hold between them at the least."""
  whole = lambda leaves: sum(math.prod(x.shape) * x.dtype.itemsize for x in leaves
                             if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key))
  trained = nnx.filter_state(run.structure.abstract[0], lora.trainable(run.config.model))
  return whole(jax.tree.leaves(run.structure.abstract)) + whole(jax.tree.leaves(trained))


def memory(program: Program) -> dict | None:
  """Per-chip bytes from the compiler: arguments, outputs, aliased (donated inputs reused as outputs),
  temporaries and peak = arguments + outputs - aliased + temporaries; None when it refused the program."""
  m = program.memory
  if m is None:
    return None
  out = {"arguments": m.argument_size_in_bytes, "outputs": m.output_size_in_bytes,
         "aliased": m.alias_size_in_bytes, "temporaries": m.temp_size_in_bytes}
  out["peak"] = out["arguments"] + out["outputs"] - out["aliased"] + out["temporaries"]
  return out


def flops_per_step(run: AbstractRun, program: Program, chips: int) -> tuple[float, str]:
  """(training FLOPs of one step, where the count comes from): the model's analytic count (what `train`'s
  MFU uses; models/transformer.py conventions) x the global batch, else XLA's per-device count x chips,
  in which a loop body (a scan) is counted once."""
  per_example = registry.flops_per_example(run.config.model, run.info)
  if per_example:
    return per_example * run.config.data.batch_size, "analytic (the model's flops_per_example)"
  return program.cost.get("flops", float("nan")) * chips, "XLA's count (a scanned loop body counted once)"


def roofline(run: AbstractRun, program: Program, target: Target, flops: float, moved: float) -> dict:
  """Seconds of compute, HBM traffic and collectives per step (`moved`: the bytes collectives move into a
  chip, planning/hlo.py); the step time (their max), what bounds it, and the MFU, examples/s and tokens/s it
  implies (see the module docstring)."""
  chip, accum = target.chip, run.config.train.grad_accum_steps
  dtype = str(run.config.model.get("dtype", "float32"))
  peak = chip.peak_float32_flops if dtype == "float32" and chip.peak_float32_flops else chip.peak_bf16_flops
  # XLA's count of the program (x accumulation steps: a loop body counted once) includes what the model's
  # count leaves out (recomputation, masked attention scores): the slower of the two is the compute time.
  program_flops = program.cost.get("flops", 0.0) * accum * target.num_chips
  scanned = bool(run.config.model.get("scan_layers", False))
  if scanned:
    compute_flops = flops * REMAT_RECOMPUTE.get(str(run.config.model.get("remat", "none")), 1.0)
  else:
    compute_flops = max(flops, program_flops if math.isfinite(program_flops) else 0.0)
  times = {"compute_s": compute_flops / (target.num_chips * peak),
           "hbm_s": program.cost.get("bytes accessed", float("nan")) * accum / chip.hbm_bytes_per_s,
           "collective_s": moved / (chip.interconnect_bytes_per_s / 2)}
  known = {k: v for k, v in times.items() if math.isfinite(v)}
  step = max(known.values())
  out = {**times, "step_s": step, "bound": max(known, key=known.get).removesuffix("_s"),
         "peak_flops_per_chip": peak, "mfu": flops / (step * target.num_chips * peak) if step else float("nan"),
         "examples_per_s": run.config.data.batch_size / step if step else float("nan"),
         "hbm_lower_bound": scanned}
  if run.info.get("seq_len"):
    out["tokens_per_s"] = out["examples_per_s"] * int(run.info["seq_len"])
  return out
