"""Exports the prepared 20 Newsgroups split (our tokenizer, seq 100) to an .npz for other frameworks.

PYTHONPATH=. .venv/bin/python benchmarks/keras_compare/export_20ng.py   # -> /tmp/keras_cmp/ng.npz
"""
import os
import numpy as np, data as data_lib
from benchmarks import workloads
from flaxforge.data import pipeline
c = workloads.config("text_cnn_20ng")
ds = data_lib.load(c.data)
out = {}
for split, rows in ds.splits.items():
  r = pipeline.Rows(rows); b = r.take(np.arange(len(r)))
  print(split, {k: (v.shape, v.dtype) for k, v in b.items()})
  for k, v in b.items(): out[f"{split}_{k}"] = v
os.makedirs("/tmp/keras_cmp", exist_ok=True)
np.savez("/tmp/keras_cmp/ng.npz", **out)
