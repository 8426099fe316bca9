"""scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes) as a TFDS array_record dataset.

The data ships inside the scikit-learn wheel, so nothing is downloaded. The split is fixed by a seeded
permutation: 1,257 train, 180 validation, 360 test, the same on every machine and every run.
"""
import numpy as np
import tensorflow_datasets as tfds

from flaxforge.data import dataset

_SPLIT_SIZES = {"validation": 180, "test": 360}  # train takes the rest
_PIXEL_MAX = 16


class Digits(dataset.PlainLog, tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description="scikit-learn load_digits: UCI optical recognition of handwritten digits, 8x8, 0-16.",
        features=tfds.features.FeaturesDict({
            "inputs": tfds.features.Tensor(shape=(8, 8), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("inputs", "label"),
    )

  def _split_generators(self, dl_manager):
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    n_val, n_test = _SPLIT_SIZES["validation"], _SPLIT_SIZES["test"]
    parts = {"test": order[:n_test], "validation": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    return {name: self._generate_examples(digits.images[idx], digits.target[idx], idx)
            for name, idx in parts.items()}

  def _generate_examples(self, images, labels, ids):
    for image, label, i in zip(images, labels, ids):
      yield int(i), {"inputs": image.astype(np.uint8), "label": int(label)}


def load(cfg) -> dataset.Dataset:
  builder = dataset.prepare(Digits(data_dir=dataset.data_dir(cfg)))
  names = [str(i) for i in range(10)]
  return dataset.Dataset(
      splits=dataset.sources(builder, dataset.SPLITS),
      info={"task": "classification", "num_classes": 10, "label_names": names,
            "input_shape": [8, 8], "input_scale": 1.0 / _PIXEL_MAX},
      assets={"labels": names},
      prepared_dir=str(builder.data_dir),
  )
