"""The claims register: every figure README.md and the first screen of BENCHMARKS.md state (accuracy, ratio,
MFU, time, size), each once, with the raw record in benchmarks/results/ it comes from and how it is
recomputed from it.

  PYTHONPATH=. .venv/bin/python -m benchmarks.claims     # the register, recomputed; exit 1 on a problem

A claim is its sentence as written, each figure a `{}`; the figures found there must equal the recomputed
ones to the precision they are written with (0.857: within 0.0005; 25,214: within 0.5; "two thirds": 5%).
A number in those texts that no claim covers is a problem too, unless NOT_FIGURES says why it is no
measured figure (a setting, an example of a message's format, a bound a test asserts), or UNRECORDED lists
it as a measured figure whose record is missing (printed by main(), for the lead to close). tests/test_claims.py
runs `problems()`. The first screen of BENCHMARKS.md is everything above its "# Lab notebook".
"""
import dataclasses
import json
import pathlib
import re
import statistics
import sys
from typing import Callable

REPO = pathlib.Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
WORDS = {"two thirds": 2 / 3}  # figures written as words, and their values


@dataclasses.dataclass(frozen=True)
class Claim:
  doc: str  # "README.md" or "BENCHMARKS.md" (its first screen)
  text: str  # as written (inline code as CODE), each figure as {}; whitespace matches any whitespace
  records: tuple  # the files in benchmarks/results/ it comes from
  recompute: Callable[[], tuple]  # the figures, in the order of the {}, from those records alone


def rows(name: str) -> list[dict]:
  """A record file's JSON lines (or its one JSON document), every line whole: a cut line raises."""
  lines = (RESULTS / name).read_text(encoding="utf-8").splitlines()
  return [json.loads(line) for line in lines if line.strip()]


def paired(name: str, impl: str, reference: str, workload: str | None = None) -> float:
  """benchmarks/report.py's ratio: the median over rounds of impl / reference in the same round."""
  runs = [r for r in rows(name) if "impl" in r and "error" not in r and workload in (None, r["workload"])]
  ref = {r["round"]: r["examples_per_s"] for r in runs if r["impl"] == reference}
  return statistics.median(r["examples_per_s"] / ref[r["round"]] for r in runs
                           if r["impl"] == impl and r["round"] in ref)


def median_of(name: str, impl: str, workload: str, key: str = "examples_per_s") -> float:
  return statistics.median(r[key] for r in rows(name) if r.get("impl") == impl and r.get("workload") == workload)


def accuracy(name: str, config: str, seed: int = 0) -> float:
  """The test accuracy of a benchmarks/accuracy.py run of `config` (its command names it) with `seed`."""
  return next(r["accuracy"] for r in rows(name)
              if config in r["command"] and f"--config.seed={seed} " in r["command"] + " ")


def tfidf() -> float:
  return next(r["accuracy"] for r in rows("accuracy_2026-11-29.jsonl") if r["command"].startswith("sklearn"))


def sweep(value: str) -> list[float]:
  """The text CNN's test accuracies over 8 seeds at one learning rate (benchmarks/seed_sweep.py)."""
  return [r["test"] for r in rows("s4_seed_sweep_lr.jsonl") if r["value"] == value]


def sweep_seed(value: str, seed: int) -> float:
  return next(r["test"] for r in rows("s4_seed_sweep_lr.jsonl") if r["value"] == value and r["seed"] == seed)


def last(name: str, split: str, step: int | None = None) -> dict:
  """The last record of `split` (at `step`) in a run's metrics.jsonl."""
  return [r for r in rows(name) if r.get("split") == split and step in (None, r["step"])][-1]


MINILM_THROUGHPUT = "finetune_throughput_minilm_2026-12-06.jsonl"


def minilm_runs(run: str) -> dict[int, float]:
  """examples/s by round of one side ("flaxforge" or "reference") of benchmarks/finetune_throughput.py."""
  return {r["round"]: r["examples_per_s"] for r in rows(MINILM_THROUGHPUT) if r.get("run") == run}


def minilm_ratios() -> list[float]:
  """flaxforge / reference, round by round."""
  ours, ref = minilm_runs("flaxforge"), minilm_runs("reference")
  return [ours[r] / ref[r] for r in sorted(ours)]


def serve(clients: int, key: str) -> float:
  return next(r[key] for r in rows("serve_load_minilm20ng.jsonl") if r["batching"] and r["clients"] == clients)


def pruned_share() -> float:
  """1 - FLOPs of MiniLM's classifier step with the pruned last block ([CLS]) / without, at sequence 128
  (models/transformer.py's analytic count; the same formula tests/test_flops.py checks by hand)."""
  from flaxforge.models.transformer import transformer_classifier_flops_per_example  # pylint: disable=g-import-not-at-top
  full = transformer_classifier_flops_per_example(6, 384, 1536, 128, 20)
  return 1 - transformer_classifier_flops_per_example(6, 384, 1536, 128, 20, pooled=True) / full


def penguins() -> list[float]:
  return [r["accuracy"] for r in rows("accuracy_2026-12-06.jsonl") if "penguins.csv" in r["command"]]


def penguins_seed(seed: int) -> dict:
  return next(r for r in rows("accuracy_2026-12-06.jsonl") if f"--config.data.split_seed={seed}" in r["command"])


def explained(steps: int = 64) -> dict:
  return next(r for r in rows("explain_bow20ng_2026-12-06.jsonl") if r["steps"] == steps)


def checkpoint(rank: int) -> dict:
  return next(r for r in rows("checkpoint_size_2026-12-06.jsonl") if r["lora_rank"] == rank)


def hf_load(dtype: str) -> dict:
  """benchmarks/hf_load_memory.py's run of `dtype` under glibc's default malloc (the table's row)."""
  return next(r for r in rows("hf_load_memory_2026-12-06.jsonl") if r["dtype"] == dtype and r["malloc"] == "glibc default")


PLAN_8B = "plan_llama8b_2026-12-06b.jsonl"
SCANNED = "+model.scan_layers=True"


def plan_8b(name: str) -> dict:
  """benchmarks/plan_llama8b.py's latest record of one `flaxforge plan` command."""
  return [r for r in rows(PLAN_8B) if r["name"] == name][-1]


def plan_8b_peak_gib(name: str) -> float:
  """A Llama-3-8B plan's peak a chip, in GiB."""
  return plan_8b(name)["plans"][0]["peak_bytes"] / 2**30


def plan_8b_refused_gib(name: str) -> float:
  """The temporaries a chip, in GiB, that the TPU compiler's refusal of a Llama-3-8B plan names (its report's
  'temporaries (in the refusal)' line)."""
  return float(next(re.search(r"([\d.]+)$", line).group(1) for line in plan_8b(name)["stdout"]
                    if line.startswith("temporaries (in the refusal)")))


def plan_8b_state_gib(name: str) -> float:
  """Parameters, gradients and optimizer state a chip, in GiB, of a Llama-3-8B plan."""
  state = plan_8b(name)["plans"][0]["state"]
  return (state["parameters"] + state["optimizer_state"] + state["gradients_estimate"]) / 2**30


def plan_8b_search_compiles(name: str) -> list[float]:
  """Compile seconds of each row of a Llama-3-8B search."""
  return [p["compile_seconds"] for p in plan_8b(name)["plans"]]


def plan_8b_minutes(name: str) -> float:
  """The compile minutes of a Llama-3-8B plan."""
  return plan_8b(name)["plans"][0]["compile_seconds"] / 60


R, B = "README.md", "BENCHMARKS.md"
CLAIMS = [
    # README.md
    Claim(R, "compiled in {} minutes on the project's 2-core CPU machine", (PLAN_8B,),
          lambda: (plan_8b_minutes("lora_v5e8_first" + SCANNED),)),
    Claim(R, "that batch ({} of {} compiled settings fit)", (PLAN_8B,),
          lambda: (sum(p["fits"] for p in plan_8b("lora_v5e8_search" + SCANNED)["plans"]),
                   len(plan_8b("lora_v5e8_search" + SCANNED)["plans"]))),
    Claim(R, "refused by the TPU compiler ({} GiB of temporaries a chip)", (PLAN_8B,),
          lambda: (plan_8b_refused_gib("lora_v5e8_default"),)),
    Claim(R, "(parameters, gradients and Adam's moments) is {} GiB a chip of its {}.", (PLAN_8B,),
          lambda: (plan_8b_state_gib("full_v5e8"), 15.75)),  # v5e's HBM: planning/targets.py
    Claim(R, "compiles {} settings in {} minutes, none fits", (PLAN_8B,),
          lambda: (len(plan_8b("full_v5e8_search" + SCANNED)["plans"]),
                   plan_8b("full_v5e8_search" + SCANNED)["wall_s"] / 60)),
    Claim(R, "fits (peak {} GiB a chip; compiled in {} minutes on the", (PLAN_8B,),
          lambda: (plan_8b_peak_gib("full_v5p64_b32"), plan_8b_minutes("full_v5p64_b32"))),
    Claim(R, "(peak {} GiB, compiled in {} minutes beside", (PLAN_8B,),
          lambda: (plan_8b_peak_gib("full_v5p64_b32" + SCANNED), plan_8b_minutes("full_v5p64_b32" + SCANNED))),
    Claim(R, "the arithmetic's ({} billion parameters x 4 bytes / 32, and twice that) to within {}%", (PLAN_8B,),
          lambda: (plan_8b("full_v5p64_b32_bytes_vs_arithmetic")["parameters_total"] / 1e9,
                   100 * max(abs(plan_8b(n)[k]["ratio"] - 1) for n in ("full_v5p64_b32_bytes_vs_arithmetic",
                             "full_v5p64_b32" + SCANNED + "_bytes_vs_arithmetic")
                             for k in ("parameters", "optimizer_state")))),
    Claim(R, "scanned: {} compiles of {} to {} minutes, {} minutes in all", (PLAN_8B,),
          lambda: (len(plan_8b_search_compiles("lora_v5e8_search" + SCANNED)),
                   min(plan_8b_search_compiles("lora_v5e8_search" + SCANNED)) / 60,
                   max(plan_8b_search_compiles("lora_v5e8_search" + SCANNED)) / 60,
                   plan_8b("lora_v5e8_search" + SCANNED)["wall_s"] / 60)),
    Claim(R, "(the gpu-plan extra): fits, peak {} GiB a GPU", (PLAN_8B,),
          lambda: (plan_8b_peak_gib("lora_h100-8"),)),
    Claim(R, "(test accuracy {}-{} over 8 seeds; BENCHMARKS.md)", ("s4_seed_sweep_lr.jsonl",),
          lambda: (min(sweep("4e-3")), max(sweep("4e-3")))),
    Claim(R, "50k-word vocabulary (test accuracy {})", ("accuracy_2026-11-29.jsonl",),
          lambda: (accuracy("accuracy_2026-11-29.jsonl", "text_bow_20ng"),)),
    Claim(R, "pooling a [CLS] token (test accuracy {} in under {} minutes on 2 CPU cores)",
          ("accuracy_2026-11-30.jsonl",),
          lambda: (accuracy("accuracy_2026-11-30.jsonl", "bert_20ng"),
                   # "under N minutes": the run's seconds round up to N
                   -(-rows("accuracy_2026-11-30.jsonl")[0]["seconds"] // 60))),
    Claim(R, "from its IDX files (test accuracy {}; BENCHMARKS.md)", ("fashion_mnist_convnet_quiet.jsonl",),
          lambda: (last("fashion_mnist_convnet_quiet.jsonl", "test")["accuracy"],)),
    Claim(R, "under-trained after 10 epochs (test accuracy {}-{} over 8 seeds)", ("s4_seed_sweep_lr.jsonl",),
          lambda: (min(sweep("1e-3")), max(sweep("1e-3")))),
    Claim(R, "At 4e-3 seeds 0 / 1 / 2 reach {} / {} / {}", ("s4_seed_sweep_lr.jsonl",),
          lambda: tuple(sweep_seed("4e-3", s) for s in (0, 1, 2))),
    Claim(R, "embedded and pooled) that reaches {} test accuracy (TF-IDF with a linear SVM reaches {} on this "
          "split)", ("accuracy_2026-11-29.jsonl",),
          lambda: (accuracy("accuracy_2026-11-29.jsonl", "text_bow_20ng"), tfidf())),
    Claim(R, "the config reaches a test accuracy of species of {} with split seed 0 ({}-{} over split seeds 0-4, "
          "each a different test split of 69 rows; {}-{} s a run through CODE on the loaded shared 2-core "
          "machine;", ("accuracy_2026-12-06.jsonl",),
          lambda: (penguins_seed(0)["accuracy"], min(penguins()), max(penguins()),
                   min(r["seconds"] for r in rows("accuracy_2026-12-06.jsonl") if "penguins" in r["command"]),
                   max(r["seconds"] for r in rows("accuracy_2026-12-06.jsonl") if "penguins" in r["command"]))),
    Claim(R, "is CODE ({}), its top tokens CODE, CODE, CODE, CODE, and the attributions sum to the logit gap "
          "within {}%", ("explain_bow20ng_2026-12-06.jsonl",),
          lambda: (explained()["probability"], 100 * explained()["completeness_error"])),
    Claim(R, "where they beat sequence 128 with [CLS] pooling, {} against {}; MiniLM reaches {} test accuracy",
          ("minilm_20ng_s256_mean.jsonl", "minilm_20ng_finetune.jsonl"),
          lambda: (last("minilm_20ng_s256_mean.jsonl", "validation")["accuracy"],
                   last("minilm_20ng_finetune.jsonl", "validation")["accuracy"],
                   last("minilm_20ng_s256_mean.jsonl", "test")["accuracy"])),
    Claim(R, "for MiniLM (6 layers, sequence 128) {}% less work", ("formula: models/transformer.py",),
          lambda: (100 * pruned_share(),)),
    Claim(R, "the optimizer's state, {} of a full fine-tune's checkpoint", ("checkpoint_size_2026-12-06.jsonl",),
          lambda: (checkpoint(0)["optimizer_array_bytes"] / (checkpoint(0)["optimizer_array_bytes"]
                                                             + checkpoint(0)["model_array_bytes"]),)),
    Claim(R, "(the 4x256 transformer's training +{}%)", ("s2_transformer.jsonl",),
          lambda: (100 * (paired("s2_transformer.jsonl", "trainer malloc=hugetlb", "trainer malloc=system") - 1),)),
    Claim(R, "since it is another +{}-{}% there", ("s2_transformer.jsonl", "s3_transformer.jsonl"),
          lambda: tuple(sorted(100 * (paired(f, "trainer", "trainer malloc=hugetlb") - 1)
                               for f in ("s2_transformer.jsonl", "s3_transformer.jsonl")))),
    Claim(R, "while the small models (the MLP, the text CNN) run {}% slower under it",
          ("s2_mlp.jsonl", "s2_text_cnn_20ng.jsonl"),
          lambda: (100 * (1 - statistics.mean(paired(f, "trainer", "trainer malloc=hugetlb")
                                              for f in ("s2_mlp.jsonl", "s2_text_cnn_20ng.jsonl"))),)),
    Claim(R, "The seed text CNN's config uses 4: +{}% in steady intervals", ("s3_main.jsonl",),
          lambda: (100 * (paired("s3_main.jsonl", "trainer", "trainer spc=1", "text_cnn_20ng") - 1),)),
    # BENCHMARKS.md, the headline table
    Claim(B, "| {} examples/s | **{}x** Keras 3 CODE, **{}x** PyTorch eager, {}x our bare step |", ("s3_final.jsonl",),
          lambda: (median_of("s3_final.jsonl", "trainer", "text_cnn_20ng"),
                   *(paired("s3_final.jsonl", "trainer", ref, "text_cnn_20ng")
                     for ref in ("keras fit", "torch eager", "bare step")))),
    Claim(B, "| {} examples/s, MFU {}% (the peak: the median start-up matmul of that time) | **{}x** PyTorch eager",
          ("s3_final.jsonl",),
          lambda: (median_of("s3_final.jsonl", "trainer", "transformer"),
                   100 * median_of("s3_final.jsonl", "trainer", "transformer", "mfu"),
                   paired("s3_final.jsonl", "trainer", "torch eager", "transformer"))),
    Claim(B, "| {} examples/s (the median of 3 rounds; {}-{}) | **{}x** CODE (transformers + PyTorch): the median "
          "of 3 alternating rounds in one run ({}x, {}x, {}x)", (MINILM_THROUGHPUT,),
          lambda: (statistics.median(minilm_runs("flaxforge").values()), min(minilm_runs("flaxforge").values()),
                   max(minilm_runs("flaxforge").values()), statistics.median(minilm_ratios()), *minilm_ratios())),
    Claim(B, "| test accuracy **{}** (validation {}): every setting chosen on the validation split, the test split "
          "read once, at the end | {}x TF-IDF + linear SVM ({})", ("minilm_20ng_s256_mean.jsonl",
                                                                   "accuracy_2026-11-29.jsonl"),
          lambda: (last("minilm_20ng_s256_mean.jsonl", "test")["accuracy"],
                   last("minilm_20ng_s256_mean.jsonl", "validation")["accuracy"],
                   last("minilm_20ng_s256_mean.jsonl", "test")["accuracy"] / tfidf(), tfidf())),
    Claim(B, "| test accuracy {} | {}x TF-IDF + linear SVM ({}) |", ("accuracy_2026-11-29.jsonl",),
          lambda: (accuracy("accuracy_2026-11-29.jsonl", "text_bow_20ng"),
                   accuracy("accuracy_2026-11-29.jsonl", "text_bow_20ng") / tfidf(), tfidf())),
    Claim(B, "| test accuracy {} | {}x TF-IDF + linear SVM | 2-core AMD EPYC | 2026-11-30", ("accuracy_2026-11-30.jsonl",),
          lambda: (accuracy("accuracy_2026-11-30.jsonl", "bert_20ng"),
                   accuracy("accuracy_2026-11-30.jsonl", "bert_20ng") / tfidf())),
    Claim(B, "| test accuracy {} (median of 8 seeds; {}-{}) | {}x TF-IDF + linear SVM", ("s4_seed_sweep_lr.jsonl",),
          lambda: (statistics.median(sweep("4e-3")), min(sweep("4e-3")), max(sweep("4e-3")),
                   statistics.median(sweep("4e-3")) / tfidf())),
    Claim(B, "| test accuracy {}; its records span {} s from step {} to the test (idle machine)",
          ("fashion_mnist_convnet_quiet.jsonl",),
          lambda: (last("fashion_mnist_convnet_quiet.jsonl", "test")["accuracy"],
                   rows("fashion_mnist_convnet_quiet.jsonl")[-1]["time"] - rows("fashion_mnist_convnet_quiet.jsonl")[0]["time"],
                   rows("fashion_mnist_convnet_quiet.jsonl")[0]["step"])),
    Claim(B, "| {} bits per byte on the reference's 64 test windows | **{}x** the bare-JAX CODE ({}; lower is better)",
          ("lm_ours_eval_64windows.json", "lm_ref_15min.jsonl"),
          lambda: (rows("lm_ours_eval_64windows.json")[0]["bits_per_byte"],
                   rows("lm_ours_eval_64windows.json")[0]["bits_per_byte"] / rows("lm_ref_15min.jsonl")[-1]["val_bpb"],
                   rows("lm_ref_15min.jsonl")[-1]["val_bpb"])),
    Claim(B, "| {} requests/s, p50 {} ms at 1 client; {} requests/s at 8 |", ("serve_load_minilm20ng.jsonl",),
          lambda: (serve(1, "requests_per_second"), serve(1, "p50_ms"), serve(8, "requests_per_second"))),
    Claim(B, "| float32 checkpoint ({} MB): **{}x** its size, the loaded model included; bfloat16 ({} MB): the "
          "float32 model ({}x) plus **{}x** |", ("hf_load_memory_2026-12-06.jsonl",),
          lambda: (hf_load("float32")["checkpoint_mb"], hf_load("float32")["load_peak_x"],
                   hf_load("bfloat16")["checkpoint_mb"], hf_load("bfloat16")["model_mb"] / hf_load("bfloat16")["checkpoint_mb"],
                   hf_load("bfloat16")["load_beyond_model_x"])),
    Claim(B, "conversations (median {} tokens, a quarter of the sequence) | {} real tokens/s packed ({}% of the "
          "padding removed) | **{}x** the same examples unpacked ({} real tokens/s)", ("chat_packing_2026-12-06.jsonl",),
          lambda: (rows("chat_packing_2026-12-06.jsonl")[2]["median_length"],
                   rows("chat_packing_2026-12-06.jsonl")[0]["real_tokens_per_second"],
                   100 * rows("chat_packing_2026-12-06.jsonl")[0]["padding_removed"],
                   rows("chat_packing_2026-12-06.jsonl")[0]["real_tokens_per_second"]
                   / rows("chat_packing_2026-12-06.jsonl")[1]["real_tokens_per_second"],
                   rows("chat_packing_2026-12-06.jsonl")[1]["real_tokens_per_second"])),
    Claim(B, "The best test accuracy recorded for MiniLM, {} (the", ("minilm_20ng_refit_lr2e-4_e4.jsonl",),
          lambda: (last("minilm_20ng_refit_lr2e-4_e4.jsonl", "test")["accuracy"],)),
]

# Numbers in those texts that are no measured figure, and why.
NOT_FIGURES = [
    (R, "Python 3.11 is what is tested", "a version"),
    (R, "weight decay {}, dropout {}, 3 epochs", "settings (launch/configs/finetune_text.py)"),
    (R, "batch 32, {}% of the training set held out", "a setting"),
    (R, "{}% of the training images", "a setting"),
    (R, "are at least {}% numbers is numeric", "the rule's threshold (data/table_cells.py)"),
    (R, "(completeness: tests hold it within {}% at the default", "the bound tests/test_explain.py asserts"),
    (R, "the heartbeat timeout: CODE, {} s unless", "a default setting"),
    (R, "heartbeat refreshed every {} s;", "a default setting"),
    (R, "older than {} s (CODE)", "a default setting"),
    (R, "(checked on jax {}.2, CPU)", "a version"),
    (B, "byte-level GPT, {} minutes of training", "the training budget (time_limit_minutes), a setting"),
    (B, "target < {}x (issue 29)", "the issue's target"),
    (R, "default {}GB, with their index beyond that", "a default setting (export's shard size)"),
    (R, "entries go past {} GB)", "a default setting (the compilation cache's size)"),
]

# Measured figures that other branches stated without keeping a raw record: each is a known gap, listed (and
# printed by main()) so that the lead sees it, until its record is in benchmarks/results/ and it becomes a Claim.
UNRECORDED = [
]

FIGURE = re.compile(r"(?<![\w.])[+-]?\d[\d,]*(?:\.\d+)?(?:\s?(?:x|%|MB|GB|KB|ms|s|min|minutes|seconds|hours)"
                    r"(?![\w])|(?=\s?%))|(?<![\w.])\d*\.\d+(?![\d.])|\b(?:twice|a sixth|a third|two thirds)\b")
NUMBER = r"([+-]?\d[\d,]*(?:\.\d+)?|" + "|".join(WORDS) + ")"


def text_of(doc: str) -> str:
  """What a reader reads of `doc`: README.md whole, BENCHMARKS.md above "# Lab notebook"; fenced code blocks
  dropped, inline code written CODE (commands and flags hold settings, not figures)."""
  text = (REPO / doc).read_text(encoding="utf-8")
  if doc == B:
    text = text.split("\n# Lab notebook", 1)[0]
  text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
  return re.sub(r"`[^`]+`", "CODE", text)


def pattern(template: str) -> re.Pattern:
  """A claim's text as a regular expression: its words literally, any whitespace between them (lines wrap),
  each {} a number (or one of WORDS) captured."""
  def literal(part: str) -> str:
    words = r"\s+".join(re.escape(w) for w in part.split())
    return (r"\s+" if part[:1].isspace() else "") + words + (r"\s+" if part[-1:].isspace() and words else "")
  return re.compile(NUMBER.join(literal(part) for part in template.split("{}")))


def stated(value: str) -> tuple[float, float]:
  """(the value, its precision: half a unit of its last written digit; 5% of a value written as words)."""
  if value in WORDS:
    return WORDS[value], 0.05 * WORDS[value]
  decimals = len(value.split(".")[1]) if "." in value else 0
  return float(value.replace(",", "")), 0.5 * 10**-decimals + 1e-9


def check(claim: Claim, text: str) -> tuple[list[str], tuple | None, list[str]]:
  """(problems, the span the claim covers, the figures as written)."""
  found = list(pattern(claim.text).finditer(text))
  if len(found) != 1:
    return [f"{claim.doc}: {'no' if not found else len(found)} place(s) read {claim.text!r}; "
            "update the register (benchmarks/claims.py) with the text"], None, []
  written = list(found[0].groups())
  try:
    figures = claim.recompute()
  except (OSError, StopIteration, IndexError, KeyError, ValueError, statistics.StatisticsError) as e:
    return [f"{claim.doc}: {claim.text!r}: its record {', '.join(claim.records)} gives no figure "
            f"({type(e).__name__}: {e})"], found[0].span(), written
  problems = []
  for as_written, figure in zip(written, figures):
    value, precision = stated(as_written)
    if abs(value - figure) > precision:
      problems.append(f"{claim.doc}: {claim.text!r} states {as_written}; its record "
                      f"({', '.join(claim.records)}) gives {figure:.6g}")
  return problems, found[0].span(), written


def problems() -> list[str]:
  """Every disagreement between a stated figure and its record, and every figure with no claim."""
  out = []
  for doc in (R, B):
    text = text_of(doc)
    covered = []
    for claim in (c for c in CLAIMS if c.doc == doc):
      found, span, _ = check(claim, text)
      out += found
      covered += [span] if span else []
    for d, template, why in NOT_FIGURES + UNRECORDED:
      if d == doc:
        spans = [m.span() for m in pattern(template).finditer(text)]
        covered += spans
        out += [] if spans else [f"{doc}: no place reads {template!r} ({why}); update benchmarks/claims.py"]
    for m in FIGURE.finditer(text):
      if not any(a <= m.start() and m.end() <= b for a, b in covered):
        line = text[:m.start()].count("\n") + 1
        out.append(f"{doc}: {m.group()!r} (line {line}: {text.splitlines()[line - 1].strip()[:90]!r}) has no "
                   "record in the claims register (benchmarks/claims.py): add one, or remove the figure")
  return out


def main():
  for doc in (R, B):
    text = text_of(doc)
    for claim in (c for c in CLAIMS if c.doc == doc):
      _, _, written = check(claim, text)
      try:
        figures = ", ".join(f"{x:.4g}" for x in claim.recompute())
      except Exception as e:  # pylint: disable=broad-except
        figures = f"({type(e).__name__})"
      print(f"{doc} | {claim.text} | stated {', '.join(written) or '?'} | recomputed {figures} | "
            f"{', '.join(claim.records)}")
  for doc, template, why in UNRECORDED:
    print(f"{doc} | {template} | NO RECORD: {why}")
  found = problems()
  print("\n".join(found) if found else f"{len(CLAIMS)} claims, every figure recomputed from its record.")
  sys.exit(1 if found else 0)


if __name__ == "__main__":
  main()
