"""Train my_model.py's classifier on topics.csv, then classify new texts:

  python train.py [WORKDIR]      (default runs/topics; running it again resumes, or re-tests a finished run)
"""
import sys

import flaxforge

import my_model


def main(workdir: str = "runs/topics"):
  results = flaxforge.train("config.py", workdir, model=my_model.from_config)
  print(f"test accuracy {results['accuracy']:.3f}")
  predictor = flaxforge.Predictor.from_workdir(workdir, best=True, model=my_model.from_config)
  texts = ["The astronaut saw a comet from orbit", "Knead the dough with butter and salt",
           "The striker scored a penalty goal"]
  for text, label in zip(texts, predictor.predict(texts)):
    print(f"{label}: {text}")


if __name__ == "__main__":
  main(*sys.argv[1:])
