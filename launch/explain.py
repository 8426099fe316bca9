"""Which tokens drove a text classifier's prediction (integrated gradients on the token embeddings):

  python -m flaxforge.launch.explain --workdir=runs/20ng_bow "The hockey playoff game went to overtime"
  python -m flaxforge.launch.explain --workdir=runs/20ng_bow --json "text" "another text"
  python -m flaxforge.launch.explain --workdir=runs/20ng_bow --html=out.html --label=rec.sport.hockey "text"

Each token's attribution is its share of logit(text) - logit(padding baseline) for the explained label;
positive (green) tokens argue for it, negative (red) against.
"""
import html
import json
import sys

from absl import flags

from flaxforge.launch import common

JSON = flags.DEFINE_bool("json", False, "One JSON object per text: {text, label, probability, logit, "
                         "baseline_logit, tokens: [{token, attribution}]}.")
HTML = flags.DEFINE_string("html", None, "Also write a self-contained HTML page here.")
LABEL = flags.DEFINE_string("label", None, "Explain this label (default: the predicted one).")
STEPS = flags.DEFINE_integer("steps", 64, "Points on the integrated-gradients path.")
CHECKPOINT = common.CheckpointChoice()


def _shade(value: float, scale: float) -> tuple[int, int, int]:
  """Green for positive, red for negative; white at 0."""
  t = min(1.0, abs(value) / scale) if scale else 0.0
  fade = int(255 * (1 - 0.7 * t))
  return (fade, 255, fade) if value >= 0 else (255, fade, fade)


def _terminal(out: dict) -> str:
  scale = max((abs(t["attribution"]) for t in out["tokens"]), default=0.0)
  if not sys.stdout.isatty():
    words = " ".join(f"{t['token']}({t['attribution']:+.3f})" for t in out["tokens"])
  else:
    words = " ".join("\x1b[30;48;2;{};{};{}m{}\x1b[0m".format(*_shade(t["attribution"], scale), t["token"])
                     for t in out["tokens"])
  return f"{out['label']} {out['probability']:.3f}\t{words}"


def _html(results: list[dict]) -> str:
  rows = []
  for out in results:
    scale = max((abs(t["attribution"]) for t in out["tokens"]), default=0.0)
    spans = " ".join('<span title="{:+.4f}" style="background:rgb({},{},{})">{}</span>'.format(
        t["attribution"], *_shade(t["attribution"], scale), html.escape(t["token"])) for t in out["tokens"])
    rows.append(f"<h2>{html.escape(out['label'])} ({out['probability']:.3f})</h2><p>{spans}</p>"
                f"<p><small>{html.escape(out['text'])}</small></p>")
  return ("<!doctype html><meta charset='utf-8'><title>flaxforge explain</title><style>body{font-family:sans-serif;"
          "max-width:60em;margin:2em auto}span{padding:0 .15em;border-radius:.2em}</style>" + "".join(rows))


def main(argv):
  texts = argv[1:]
  if not texts:
    raise common.UserError('no text to explain: pass it as an argument, e.g. flaxforge explain --workdir=RUN "text"')
  workdir = common.require_workdir()
  common.use_workdir_xla_flags(workdir)
  from flaxforge.inference import explain  # pylint: disable=g-import-not-at-top
  step, best = CHECKPOINT.chosen()
  explainer = explain.Explainer.from_workdir(workdir, step=step, best=best)
  results = [explainer.explain(text, label=LABEL.value, steps=STEPS.value) for text in texts]
  for out in results:
    print(json.dumps(out) if JSON.value else _terminal(out))
  if HTML.value:
    with open(HTML.value, "w", encoding="utf-8") as f:
      f.write(_html(results))


if __name__ == "__main__":
  common.run(main)
