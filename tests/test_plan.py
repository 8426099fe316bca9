"""flaxforge plan: the train step compiled for TPU topologies on this CPU machine (libtpu, no TPU): what fits,
what does not (the compiler's refusal, or the state alone), multi-slice, pretrained models from config.json
alone, the collectives read from HLO, --search, and the command's exit statuses."""
import json
import math
import subprocess
import sys
import types

import pytest

from conftest import REPO
from flaxforge.core.errors import UserError
from flaxforge.launch.configs import finetune_lm, gpt_text, tiny
from flaxforge.planning import hlo, plan as plan_lib, search, targets
from flaxforge.trainer import state as state_lib


def _gpt(**fields):
  config = gpt_text.get_config()
  config.model.size = "tiny"
  config.model.dtype = "bfloat16"
  for name, value in fields.items():
    section, key = name.split(".")
    config[section][key] = value
  return config


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "flaxforge.launch.plan", *args], cwd=REPO, capture_output=True,
                        text=True, timeout=900)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
  """A Llama-shaped config.json and nothing else: planning must not read weights."""
  path = tmp_path_factory.mktemp("llama")
  (path / "config.json").write_text(json.dumps({
      "model_type": "llama", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
      "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 512,
      "rms_norm_eps": 1e-5, "tie_word_embeddings": False}))
  return str(path)


@pytest.mark.slow  # a TPU compile
def test_an_fsdp_gpt_fits_a_v5e_slice_and_its_state_bytes_follow_the_arithmetic():
  # Wide enough that TPU layout padding of the small vectors (biases, norms) stays within the 5%.
  config = _gpt(**{"model.num_layers": 2, "model.embed_dim": 512, "model.num_heads": 8, "model.mlp_dim": 2048,
                   "data.batch_size": 4, "mesh.data": 1, "mesh.fsdp": 4})
  target = targets.parse("v5e-4")
  plan = plan_lib.make(config, target)
  assert plan.fits and not plan.refused and plan.memory["peak"] <= plan.hbm_per_chip
  assert plan.mesh == {"data": 1, "fsdp": 4, "tensor": 1}
  # AdamW: float32 parameters and two float32 moments, sharded 4 ways (FSDP): the plan's shares, and the
  # compiled program's own arguments less the batch and the metric sums.
  from flaxforge.planning import abstract  # pylint: disable=import-outside-toplevel
  run = abstract.build(config, target.devices())
  arithmetic = state_lib.parameter_count(run.structure.abstract) * 4 * 3 / 4
  assert plan.state["parameters"] + plan.state["optimizer_state"] == pytest.approx(arithmetic, rel=0.05)
  assert plan.memory["arguments"] - plan.state["batch"] == pytest.approx(arithmetic, rel=0.05)
  roofline = plan.roofline
  assert roofline["step_s"] == max(roofline["compute_s"], roofline["hbm_s"], roofline["collective_s"])
  assert 0 < roofline["mfu"] <= 1 and roofline["tokens_per_s"] == pytest.approx(4 * 256 / roofline["step_s"])
  assert plan.collectives["all-gather"]["count"] > 0  # FSDP gathers the sharded weights


@pytest.mark.slow  # a TPU compile
def test_a_v5p_topology_and_a_pretrained_model_from_its_config_json_alone(llama_dir):
  config = finetune_lm.get_config()
  config.model.pretrained = llama_dir
  config.model.lora.rank = 4
  config.data.seq_len = 128
  config.data.batch_size = 8
  plan = plan_lib.make(config, targets.parse("v5p-8"))  # 4 chips, two TensorCores each
  assert plan.fits and plan.chips == 4 and plan.chip == "v5p"
  assert 0 < plan.state["trained_parameters"] < plan.state["parameters"] / 10  # LoRA: adapters only


@pytest.mark.slow  # two TPU compiles
def test_a_quantized_base_plans_in_its_stored_bytes(llama_dir):
  """model.base_quant=int8 (QLoRA): the frozen base's dense kernels count one byte a weight, not four."""
  planned = {}
  for kind in ("none", "int8"):
    config = finetune_lm.get_config()
    config.model.pretrained, config.model.lora.rank, config.model.base_quant = llama_dir, 4, kind
    config.model.lora.targets = "qkv,out,up,down"
    config.data.seq_len, config.data.batch_size = 128, 8
    planned[kind] = plan_lib.make(config, targets.parse("v5e-1")).state
  dense = 2 * (256 * 256 * 2 + 256 * 64 * 2 + 256 * 512 * 3)  # per layer: q, out, k, v, gate, up, down
  saved = planned["none"]["parameters"] - planned["int8"]["parameters"]
  assert saved == pytest.approx(3 * dense, rel=0.02)  # 4 bytes to 1 (the per-channel scales are ~1%)
  assert "int8" in planned["int8"]["dtypes"] and planned["int8"]["trained_parameters"] == planned["none"][
      "trained_parameters"]


@pytest.mark.slow  # a TPU compile
def test_two_slices_compile_as_one_program():
  plan = plan_lib.make(_gpt(**{"data.batch_size": 8, "mesh.data": 2, "mesh.fsdp": -1}), targets.parse("v5e-4", 2))
  assert plan.fits and plan.chips == 8 and plan.slices == 2 and plan.mesh == {"data": 2, "fsdp": 4, "tensor": 1}


@pytest.mark.slow  # a TPU compile
def test_a_classifier_reads_its_data_for_the_batch_shapes():
  config = tiny.get_config()
  plan = plan_lib.make(config, targets.parse("v5e-4"))
  assert plan.fits and plan.state["batch"] > 0 and plan.roofline["examples_per_s"] > 0


@pytest.mark.slow  # a TPU compile
def test_the_tpu_compilers_refusal_is_a_verdict_with_levers():
  plan = plan_lib.make(_gpt(**{"data.seq_len": 4096, "data.batch_size": 512}), targets.parse("v5e-4"))
  assert not plan.fits and "Ran out of memory" in plan.refused and plan.memory is None
  assert plan.refused_temporaries() > plan.hbm_per_chip
  assert any("grad_accum_steps=2" in lever for lever in plan.levers)
  line = plan_lib.verdict_line(plan)
  assert line.startswith("does not fit on v5e-4: the TPU compiler refused it") and "\n" not in line


@pytest.mark.slow  # a TPU compile
def test_what_cannot_fit_exits_1_with_one_line_of_levers(tmp_path):
  out = _cli("--config=gpt_text", "--config.model.size=1b", "--target=v5e-1", "--config.data.batch_size=1",
             f"--out={tmp_path / 'plan.json'}")
  assert out.returncode == 1, out.stderr[-2000:]
  last = out.stdout.strip().splitlines()[-1]
  assert last.startswith("does not fit on v5e-1: float32 parameters, gradients and optimizer state alone")
  assert "--target=v5e-" in last  # a larger slice that would hold the state
  saved = json.loads((tmp_path / "plan.json").read_text())
  assert saved["fits"] is False and saved["state"]["parameters"] > 4 * 2**30


@pytest.mark.slow  # subprocess CLI runs
@pytest.mark.parametrize("target", ["v9-8", "v5e-3", "v5p-6", "h100-3"])
def test_an_unknown_target_is_one_line_and_exit_2(target):
  out = _cli("--config=gpt_text", f"--target={target}")
  assert out.returncode == 2
  assert len(out.stderr.strip().splitlines()) == 1 and "v5e-{1,4,8," in out.stderr, out.stderr


def test_target_names_count_what_users_count():
  assert targets.parse("v5p-64").num_chips == 32 and targets.parse("v4-8").num_chips == 4
  assert targets.parse("v5e-8").num_chips == 8 and targets.parse("v6e-256").num_chips == 256
  assert targets.parse("v5e-16", slices=4).num_chips == 64 and targets.parse("h100-8").num_chips == 8
  with pytest.raises(UserError, match="--slices is for TPU targets"):
    targets.parse("h200-8", slices=2)


def test_collectives_in_a_loop_count_once_per_trip():
  text = """HloModule m

%add (a: f32[], b: f32[]) -> f32[] {
  ROOT %s = f32[] add(f32[] %a, f32[] %b)
}

%body (p: (s32[], f32[1024])) -> (s32[], f32[1024]) {
  %g = f32[1024]{0} get-tuple-element(%p), index=1
  %r = f32[1024]{0} all-reduce(%g), replica_groups=[2,4]<=[8], to_apply=%add
  ROOT %t = (s32[], f32[1024]) tuple(%i, %r)
}

%cond (p: (s32[], f32[1024])) -> pred[] {
  ROOT %c = pred[] constant(true)
}

ENTRY %main (x: f32[256]) -> f32[2048] {
  %w = (s32[], f32[1024]) while(%init), condition=%cond, body=%body, backend_config={"known_trip_count":{"n":"3"}}
  %ag = (f32[256]{0}, f32[2048]{0}) all-gather-start(%x), replica_groups={{0,1,2,3,4,5,6,7}}, dimensions={0}
  ROOT %d = f32[2048]{0} all-gather-done(%ag)
}
"""
  kinds, known = hlo.collectives(text, devices=8)
  assert known
  assert kinds["all-reduce"].count == 3 and kinds["all-reduce"].bytes_moved == pytest.approx(3 * 2 * 3 / 4 * 4096)
  assert kinds["all-gather"].count == 1 and kinds["all-gather"].bytes_moved == pytest.approx(7 / 8 * 8192)


def test_search_layouts_shard_the_state_just_enough():
  """By arithmetic alone (no compile): a 1.3B-parameter model's AdamW state (21 GB) on a v5e-8 leaves half of
  each chip free from FSDP over 4 chips on, so that is the split without tensor parallelism."""
  target = targets.parse("v5e-8")
  devices = target.devices()
  found = search.layouts(_gpt(**{"model.size": "1b"}), target, devices, log=lambda line: None)
  assert {"mesh.data": 2, "mesh.fsdp": 4, "mesh.tensor": 1} in found
  assert all(m["mesh.data"] * m["mesh.fsdp"] * m["mesh.tensor"] == 8 for m in found)
  assert sorted(m["mesh.tensor"] for m in found) == [1, 2, 4, 8]


@pytest.mark.slow  # a TPU compile
def test_search_ranks_settings_that_fit_as_train_overrides(monkeypatch):
  monkeypatch.setattr(search, "TENSOR_SIZES", (1,))  # fewer compiles: layouts are tested above
  monkeypatch.setattr(search, "MAX_MICRO_BATCH", 4)
  monkeypatch.setattr(search, "REMAT_POLICIES", ("none",))  # step 4 has its own test
  config = _gpt(**{"data.seq_len": 512, "data.batch_size": 64})
  target = targets.parse("v5e-4")
  plans = search.search(config, target, log=lambda line: None)
  found = search.ranked(plans)
  assert found and all(p.fits for p in found)
  rates = [p.roofline["tokens_per_s"] for p in found]
  assert rates == sorted(rates, reverse=True)
  # micro-batches of 1 and of 4 a device, then accumulation up to the configured batch of 64
  assert sorted((p.batch_size, p.grad_accum_steps) for p in plans) == [(4, 1), (16, 1), (64, 4)]
  config = config.copy_and_resolve_references()
  for override in found[0].overrides:  # the overrides are flags train takes, and give the same run
    field, value = override.removeprefix("--config.").split("=")
    section, key = field.split(".")
    config[section][key] = int(value) if value.isdigit() else value
  assert (config.data.batch_size, config.train.grad_accum_steps) == (found[0].batch_size, found[0].grad_accum_steps)
  assert math.isfinite(found[0].roofline["mfu"])


def test_search_tries_stronger_remat_only_while_the_batch_needs_accumulation(monkeypatch):
  """Step 4 by its control flow (the compiles stubbed: the largest micro-batch that fits is 1 a device
  without remat, 2 with 'dots' and 4 with 'full'): each policy's plans carry its override, accumulation
  reaches the configured batch under the lighter ones, and no policy is tried after one runs it whole."""
  per_device = {"none": 1, "dots": 2, "full": 4}
  compiled = []

  def fake_largest(config, target, devices, fixed, log):
    shards = fixed["mesh.data"] * fixed["mesh.fsdp"]
    batch = per_device[fixed["model.remat"]] * shards
    compiled.append((fixed["model.remat"], batch, 1))
    return [types.SimpleNamespace(batch_size=batch, fits=True)]

  def fake_compiled(config, target, devices, overrides, log):
    compiled.append((overrides["model.remat"], overrides["data.batch_size"], overrides["train.grad_accum_steps"]))
    return types.SimpleNamespace(batch_size=overrides["data.batch_size"], fits=True)

  monkeypatch.setattr(search, "layouts", lambda *a: [{"mesh.data": 1, "mesh.fsdp": 4, "mesh.tensor": 1}])
  monkeypatch.setattr(search, "_largest_micro_batch", fake_largest)
  monkeypatch.setattr(search, "_compiled", fake_compiled)
  search.search(_gpt(**{"data.batch_size": 16}), targets.parse("v5e-4"), devices=[], log=lambda line: None)
  assert compiled == [("none", 4, 1), ("none", 16, 4), ("dots", 8, 1), ("dots", 16, 2), ("full", 16, 1)]
  compiled.clear()
  search.search(_gpt(**{"data.batch_size": 8}), targets.parse("v5e-4"), devices=[], log=lambda line: None)
  assert compiled == [("none", 4, 1), ("none", 8, 2), ("dots", 8, 1)]  # 'full' is never tried


@pytest.mark.parametrize("remat,lever", [("none", "--config.model.remat=dots"), ("dots", "--config.model.remat=full"),
                                         ("full", None)])
def test_activations_that_do_not_fit_name_the_next_remat_policy(remat, lever):
  """A run whose state is small but whose peak is not (activations) is told the next stronger policy."""
  gib = 2**30
  plan = types.SimpleNamespace(
      state={"parameters": gib, "optimizer_state": gib, "gradients_estimate": gib}, hbm_per_chip=16 * gib,
      mesh={"data": 4, "fsdp": 1, "tensor": 8}, chips=4, batch_size=4, grad_accum_steps=1, total_state_bytes=3 * gib)
  found = [line for line in plan_lib.levers(plan, _gpt(**{"model.remat": remat}), targets.parse("v5e-4"))
           if "model.remat" in line]
  assert found == ([] if lever is None else [f"recompute activations in the backward pass ({lever})"])


@pytest.mark.slow  # a subprocess CLI run
def test_planning_leaves_jaxs_persistent_cache_alone(tmp_path, monkeypatch):
  """A compile-only executable read back from JAX's persistent cache fails ("PjRtCompiler must be constructed
  with a Client", a warning on every later plan): planning neither writes nor reads it."""
  cache = tmp_path / "jax_cache"
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(cache))
  monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  out = _cli("--config=gpt_text", "--config.model.size=tiny", "--target=v5e-4")
  assert out.returncode == 0, out.stderr[-2000:]
  assert not cache.exists() or not any(cache.iterdir())
  assert "PjRtCompiler" not in out.stderr


def test_search_ranks_equal_predictions_by_the_configured_batch_then_the_smaller_peak():
  """A scanned model's roofline is compute-bound at the model's FLOPs for every layout, so predictions tie:
  a setting that trains another global batch must not rank first for it."""
  def fake(rate, batch, peak):
    return types.SimpleNamespace(fits=True, roofline={"tokens_per_s": rate, "examples_per_s": rate / 512},
                                 batch_size=batch, peak=lambda: peak)
  plans = [fake(100, 1, 8), fake(100, 8, 13), fake(100, 8, 11), fake(120, 2, 15), fake(90, 8, 1),
           types.SimpleNamespace(fits=False, roofline={"tokens_per_s": 500}, batch_size=8, peak=lambda: 99)]
  order = [(p.roofline["tokens_per_s"], p.batch_size, p.peak()) for p in search.ranked(plans, batch_size=8)]
  assert order == [(120, 2, 15), (100, 8, 11), (100, 8, 13), (100, 1, 8), (90, 8, 1)]
