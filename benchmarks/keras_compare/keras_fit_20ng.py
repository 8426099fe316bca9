"""The seed's Keras text CNN on the exported arrays, one line per seed (BENCHMARKS.md, issue 3 accuracy).

/work/venvs/tf/bin/python benchmarks/keras_compare/keras_fit_20ng.py 0 1 2            # TensorFlow backend
MODE=dense /work/venvs/tf/bin/python benchmarks/keras_compare/keras_fit_20ng.py 0 1 2 # embedding grad made dense
KERAS_BACKEND=jax python benchmarks/keras_compare/keras_fit_20ng.py 0 1 2             # (a venv with keras + jax)
"""
import os, sys, numpy as np, keras
try:
  import tensorflow as tf
except ImportError:
  tf = None
from keras import layers
d = np.load("/tmp/keras_cmp/ng.npz")
mode = os.environ.get("MODE", "")
orig = keras.optimizers.Adam.update_step
seen = set()
def patched(self, gradient, variable, learning_rate):
  if tf is not None and isinstance(gradient, tf.IndexedSlices):
    seen.add(("IndexedSlices", tuple(variable.shape)))
    if mode == "dense":
      gradient = tf.convert_to_tensor(gradient)
  return orig(self, gradient, variable, learning_rate)
keras.optimizers.Adam.update_step = patched
for seed in map(int, sys.argv[1:]):
  keras.utils.set_random_seed(seed)
  m = keras.Sequential([keras.Input((100,), dtype="int32"), layers.Embedding(10000, 16), layers.Conv1D(32, 7, activation="relu"),
                        layers.MaxPooling1D(7), layers.Conv1D(64, 7, activation="relu"), layers.GlobalMaxPooling1D(),
                        layers.Dense(64, activation="relu"), layers.Dense(20, activation="softmax")])
  m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
  h = m.fit(d["train_inputs"], d["train_label"], batch_size=32, epochs=10, validation_data=(d["validation_inputs"], d["validation_label"]), verbose=0)
  loss, acc = m.evaluate(d["test_inputs"], d["test_label"], verbose=0)
  print(f"seed {seed} backend={keras.backend.backend()} mode={mode} keras test acc {acc:.4f} loss {loss:.3f} sparse={sorted(seen)}", flush=True)
