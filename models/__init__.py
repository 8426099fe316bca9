"""The networks. Each built-in model is a module with `from_config(cfg, info, *, rngs)` (an `nnx.Module` whose
`__call__(inputs)` returns float32 logits) and its analytic `flops_per_example(cfg, info)`; `registry` finds
one by name, `fields` declares their config sections (JAX-free), `hf` loads and exports Hugging Face
checkpoints.

Importing this package imports nothing: `flaxforge.models.fields` answers `--help` before JAX starts.
"""
