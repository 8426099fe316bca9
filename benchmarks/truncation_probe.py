"""How much of each 20 Newsgroups post a classifier needs: TF-IDF + LinearSVC (the 0.861 baseline's recipe)
on the MiniLM tokenizer's word pieces of a window of each post (its first H tokens, or first H and last T),
scored on a seeded 10% validation holdout of the train posts (fit on the other 90%) and on the bydate test
split (fit on all train posts). A cheap, linear stand-in for what a fine-tune that reads only that window
could learn; one JSON line per window on stdout.

  PYTHONPATH=. .venv/bin/python -m benchmarks.truncation_probe \
      [--manual_dir=/work/shared/datasets/20newsgroups] [--model=/work/shared/models/all-MiniLM-L6-v2]
"""
import argparse
import json
import os

import numpy as np
import tokenizers
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from benchmarks import workloads
from flaxforge.data import newsgroups

WINDOWS = {"whole post": (None, 0), "first 254": (254, 0), "first 126 + last 128": (126, 128),
           "first 62 + last 192": (62, 192), "first 510": (510, 0), "first 126 + last 384": (126, 384)}


def window(pieces: list[str], head: int | None, tail: int) -> list[str]:
  if head is None or len(pieces) <= head + tail:
    return pieces
  return pieces[:head] + (pieces[-tail:] if tail else [])


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--manual_dir", default=workloads.NG_DIR)
  p.add_argument("--model", default="/work/shared/models/all-MiniLM-L6-v2")
  a = p.parse_args()
  tok = tokenizers.Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
  tok.no_truncation()
  tok.no_padding()
  archive = os.path.join(a.manual_dir, "20news-bydate.tar.gz")
  data = {}
  for split in ("train", "test"):
    texts, labels = zip(*newsgroups.documents(archive, split))
    data[split] = [e.tokens[1:-1] for e in tok.encode_batch(list(texts))], np.asarray(labels)
  (train, y), (test, y_test) = data["train"], data["test"]
  held = np.zeros(len(train), bool)
  held[np.random.default_rng(0).permutation(len(train))[:len(train) // 10]] = True
  for name, (head, tail) in WINDOWS.items():
    docs = [" ".join(window(t, head, tail)) for t in train]
    test_docs = [" ".join(window(t, head, tail)) for t in test]
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, token_pattern=r"\S+",
                                 lowercase=False)
    x = vectorizer.fit_transform(docs)
    validation = float((LinearSVC().fit(x[~held], y[~held]).predict(x[held]) == y[held]).mean())
    test_accuracy = float((LinearSVC().fit(x, y).predict(vectorizer.transform(test_docs)) == y_test).mean())
    print(json.dumps({"window": name, "validation": round(validation, 4), "test": round(test_accuracy, 4)}),
          flush=True)


if __name__ == "__main__":
  main()
