"""Explain's figures, recorded: the label, its probability, the top tokens and completeness (how far the
attributions' sum is from the logit gap F(input) - F(baseline)) of `flaxforge explain` on a trained run.

  PYTHONPATH=. .venv/bin/python -m benchmarks.explain_record --workdir=RUN --steps=64,1024 \
      --out=benchmarks/results/explain_bow20ng.jsonl ["TEXT" ...]

One JSON line per (text, steps): `completeness_error` = |sum - gap| / |gap|. The default text is the README's.
"""
import argparse
import json

from benchmarks import records
from flaxforge.inference import explain

README_TEXT = "The hockey playoff game went to overtime before the home team scored the winning goal."


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--workdir", required=True)
  p.add_argument("--steps", default="64")
  p.add_argument("--out", default="")
  p.add_argument("texts", nargs="*", default=[README_TEXT])
  a = p.parse_args()
  explainer = explain.Explainer.from_workdir(a.workdir)
  rows = []
  for text in a.texts:
    for steps in (int(s) for s in a.steps.split(",")):
      out = explainer.explain(text, steps=steps)
      total, gap = sum(t["attribution"] for t in out["tokens"]), out["logit"] - out["baseline_logit"]
      top = sorted(out["tokens"], key=lambda t: -t["attribution"])[:4]
      rows.append({**records.machine(), "workdir": a.workdir, "text": text, "steps": steps, "label": out["label"],
                   "probability": out["probability"], "logit_gap": gap, "attribution_sum": total,
                   "completeness_error": abs(total - gap) / abs(gap),
                   "top_tokens": [[t["token"], round(t["attribution"], 4)] for t in top]})
      print(json.dumps(rows[-1]), flush=True)
  if a.out:
    records.append(a.out, rows)


if __name__ == "__main__":
  main()
