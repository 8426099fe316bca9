"""flaxforge: an accelerator-first JAX/Flax NNX trainer.

The distribution installs this one package; its subpackages are the repository's top-level folders
(pyproject.toml maps them): `flaxforge.launch` (what a user runs), `flaxforge.trainer` (the engine),
`flaxforge.models` (the networks), `flaxforge.data` (builders and pipelines) and `flaxforge.core`
(what every layer shares). Layers import only downwards: launch -> trainer -> {data, models} -> core.
"""
__version__ = "0.1.0"
