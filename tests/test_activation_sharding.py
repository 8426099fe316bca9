"""Activations split by batch between transformer blocks (models/sharding.py): under FSDP the compiled TPU step
gathers weights, not activations, and a scan over blocks moves what the unrolled blocks move, each trip
counted (planning/hlo.py reads the TPU loop's trip count from its condition)."""
import functools
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from test_plan import _gpt
from flaxforge.models import sharding
from flaxforge.planning import abstract, compile as compile_lib, hlo, targets


@functools.cache
def _collectives(constrained: bool = True, scan: bool = False):
  """Bytes each kind of collective moves into a chip per step, and whether every loop's trip count was
  read, for a 4-chip FSDP GPT on v5e-4 (`constrained`: with models/sharding.py's constraints)."""
  config = _gpt(**{"model.num_layers": 4, "model.embed_dim": 512, "model.num_heads": 8, "model.mlp_dim": 2048,
                   "data.batch_size": 8, "mesh.data": 1, "mesh.fsdp": 4, "model.scan_layers": scan})
  target = targets.parse("v5e-4")
  with mock.patch.object(sharding, "constrain", sharding.constrain if constrained else lambda x, names: x):
    program = compile_lib.compile_step(abstract.build(config, target.devices()), "tpu")
  kinds, known = hlo.collectives(program.hlo, target.num_chips)
  return {kind: c.bytes_moved for kind, c in kinds.items()}, known


@pytest.mark.slow  # two TPU compiles
def test_fsdp_gathers_weights_not_activations():
  """Left to sharding propagation, XLA met the batch split over fsdp and the weights split along 'embed'
  over fsdp by moving activations too (an 8B slice on v5p-64: 66 GiB of temporaries a chip, 6.6 with the
  constraint; BENCHMARKS.md)."""
  constrained, _ = _collectives()
  free, _ = _collectives(constrained=False)
  assert constrained["all-gather"] > 0
  assert constrained["all-to-all"] == 0 < free["all-to-all"]
  assert constrained["all-gather"] + constrained["all-reduce"] < 0.7 * (free["all-gather"] + free["all-reduce"])


@pytest.mark.slow  # two TPU compiles
def test_a_scan_over_blocks_moves_what_the_unrolled_blocks_move():
  """The scanned blocks' gathers sit in a TPU while loop whose trip count XLA does not write: the count comes
  from its condition, and the totals match the unrolled program's."""
  unrolled, unrolled_known = _collectives()
  scanned, scanned_known = _collectives(scan=True)
  assert unrolled_known and scanned_known
  assert scanned["all-gather"] == pytest.approx(unrolled["all-gather"], rel=0.2)
  assert scanned["all-reduce"] == pytest.approx(unrolled["all-reduce"], rel=0.2)


def test_a_loop_condition_gives_the_trip_count():
  text = """HloModule m

%cond (p: (s32[], f32[8])) -> pred[] {
  %c = s32[]{:T(128)} constant(6)
  %p = (s32[], f32[8]) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  ROOT %lt = pred[] compare(%i, %c), direction=LT
}

%body (p: (s32[], f32[8])) -> (s32[], f32[8]) {
  %p = (s32[], f32[8]) parameter(0)
  %x = f32[8] get-tuple-element(%p), index=1
  %g = f32[32] all-gather(%x), replica_groups=[1,4]<=[4], dimensions={0}
  ROOT %t = (s32[], f32[8]) tuple(%i, %x)
}

ENTRY %main (a: f32[8]) -> f32[8] {
  %w = (s32[], f32[8]) while(%t0), condition=%cond, body=%body
}
"""
  kinds, known = hlo.collectives(text, 4)
  assert known and kinds["all-gather"].count == 6
  assert kinds["all-gather"].bytes_moved == pytest.approx(6 * 0.75 * 32 * 4)
  unknown, known = hlo.collectives(text.replace("direction=LT", "direction=NE"), 4)
  assert not known and unknown["all-gather"].count == 1


def test_constraints_apply_only_where_a_step_traces_on_a_mesh():
  x = jnp.ones((8, 4, 2))
  assert sharding.constrain(x, ("batch", None, None)) is x  # no context: a model called eagerly
  mesh = Mesh(np.asarray(jax.devices()[:1]), ("data",))
  with sharding.activation_sharding(mesh, (("batch", "data"),)):
    assert sharding.constrain(x, ("batch", None, None)) is x  # one device: nothing to split
  mesh = Mesh(np.asarray(jax.devices()[:2]), ("data",))
  with sharding.activation_sharding(mesh, (("batch", "data"),)):
    y = jax.jit(lambda v: sharding.constrain(v, ("batch", None, None)))(x)
    odd = jax.jit(lambda v: sharding.constrain(v, ("batch", None, None)))(jnp.ones((3, 2)))
  assert y.sharding.is_equivalent_to(NamedSharding(mesh, P("data")), 3)
  assert odd.sharding.is_equivalent_to(NamedSharding(mesh, P()), 2)  # 3 rows over 2 devices: kept whole


@pytest.mark.slow  # two TPU compiles
def test_a_scanned_plans_roofline_counts_the_recomputation_and_says_hbm_is_a_lower_bound():
  """XLA's cost analysis counts a scanned body once, so a scanned plan's compute time is the model's FLOPs,
  with remat='full' recomputing the forward pass (8N against 6N a token), and its HBM time a lower bound."""
  from flaxforge.planning import plan as plan_lib, report  # pylint: disable=import-outside-toplevel
  fields = {"model.num_layers": 4, "data.batch_size": 8, "model.scan_layers": True}
  plain = plan_lib.make(_gpt(**fields), targets.parse("v5e-4"))
  recomputed = plan_lib.make(_gpt(**fields, **{"model.remat": "full"}), targets.parse("v5e-4"))
  assert recomputed.flops_per_step == plain.flops_per_step
  assert recomputed.roofline["compute_s"] == pytest.approx(4 / 3 * plain.roofline["compute_s"])
  assert plain.roofline["hbm_lower_bound"] and "HBM >= " in report.text(plain, "gpt_text")
