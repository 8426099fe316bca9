"""A plan as the terminal shows it: memory per chip against the chip's, FLOPs, collectives, the roofline, and
the verdict as the last line."""
from flaxforge.planning.plan import Plan, size, verdict_line

def _memory(plan: Plan) -> list[str]:
  """The memory table, in one unit: GiB, or MiB for a plan under 1 GiB a chip."""
  m, s = plan.memory, plan.state
  unit, scale = ("GiB", 2**30) if plan.peak() >= 2**30 else ("MiB", 2**20)
  row = lambda name, value, note="": f"{name:<30}{value / scale:>9.2f}{note}"
  trained = f"  ({s['trained_parameters'] / scale:.2f} trained)" if s["trained_parameters"] < s["parameters"] else ""
  state = [row(f"  parameters ({'/'.join(s['dtypes'])})", s["parameters"], trained),
           row("  optimizer state", s["optimizer_state"]), row("  batch", s["batch"])]
  lines = [f"memory per chip ({unit})"]
  if not m:
    lines += state + [row("  gradients (estimate)", s["gradients_estimate"])]
    if plan.refused:
      lines.append(row("temporaries (in the refusal)", plan.refused_temporaries()))
    return lines
  return lines + [row("arguments", m["arguments"]), *state, row("outputs", m["outputs"]),
                  row("aliased (donated inputs)", m["aliased"]), row("temporaries", m["temporaries"]),
                  row("  gradients (estimate)", s["gradients_estimate"]),
                  row("  activations, workspace", max(m["temporaries"] - s["gradients_estimate"], 0)),
                  row("peak", m["peak"], f"  of {plan.hbm_per_chip / scale:.2f}, "
                                         f"{(plan.hbm_per_chip - m['peak']) / scale:.2f} free")]


def text(plan: Plan, title: str) -> str:
  """The plan's table; `title` names the config."""
  r = plan.roofline
  mesh = " ".join(f"{k}={v}" for k, v in plan.mesh.items())
  accum = f" in {plan.grad_accum_steps} micro-batches" if plan.grad_accum_steps > 1 else ""
  tokens = f" x {plan.seq_len} tokens" if plan.seq_len else ""
  slices = f" ({plan.slices} slices)" if plan.slices > 1 else ""
  if plan.refused:
    compiled = f"compiled in {plan.compile_seconds:.1f} s: refused (out of memory)"
  elif plan.memory:
    compiled = f"compiled in {plan.compile_seconds:.1f} s"
  else:
    compiled = "not compiled: the state, its gradients and the batch alone exceed a chip"
  chips = f"{plan.chips} {plan.chip} chip{'s' if plan.chips > 1 else ''} of {size(plan.hbm_per_chip)}"
  lines = [f"plan: {title} on {plan.target}{slices}: {chips}; "
           f"mesh {mesh}; batch {plan.batch_size}{tokens}{accum}", compiled, "", *_memory(plan), "",
           f"FLOPs per step   {plan.flops_per_step:.3e}, {plan.flops_source}"]
  if plan.compiler_cost.get("flops"):
    lines.append(f"                 XLA counts {plan.compiler_cost['flops']:.3e} a chip (a loop body once)")
  if plan.collectives:
    kinds = "; ".join(f"{k} {c['count']}x {size(c['bytes_moved'])}" for k, c in plan.collectives.items())
    lines.append(f"collectives      {kinds} (moved into each chip per step)")
  elif plan.memory:
    lines.append("collectives      none")
  if r:
    rate = f"{r['tokens_per_s']:,.0f} tokens/s" if "tokens_per_s" in r else f"{r['examples_per_s']:,.1f} examples/s"
    hbm = f">= {r['hbm_s'] * 1e3:.2f} ms (scanned blocks counted once)" if r.get("hbm_lower_bound") else \
        f"{r['hbm_s'] * 1e3:.2f} ms"
    lines.append(f"roofline         compute {r['compute_s'] * 1e3:.2f} ms, HBM {hbm}, "
                 f"collectives {r['collective_s'] * 1e3:.2f} ms: {r['step_s'] * 1e3:.2f} ms a step "
                 f"({r['bound']}-bound), MFU <= {100 * r['mfu']:.0f}%, {rate}")
  return "\n".join(lines + ["", verdict_line(plan)])
