"""The input pipeline: batches are a pure function of (seed, step), split by process, resumable."""
import numpy as np

from flaxforge.data import pipeline, preprocess


def _rows(n=50):
  return pipeline.Rows([{"inputs": np.full(3, i, np.int32), "label": i % 5} for i in range(n)])


def _ids(batch):
  return batch["inputs"][:, 0].tolist()


def test_each_epoch_is_a_seeded_permutation_and_batches_straddle_epochs():
  it = pipeline.train_batches(_rows(50), 10, 10, seed=3)
  ids = [i for b in it for i in _ids(b)]
  assert sorted(ids[:50]) == list(range(50)) and sorted(ids[50:]) == list(range(50))
  assert ids[:50] != ids[50:]  # a new order each epoch
  again = [i for b in pipeline.train_batches(_rows(50), 10, 10, seed=3) for i in _ids(b)]
  other = [i for b in pipeline.train_batches(_rows(50), 10, 10, seed=4) for i in _ids(b)]
  assert ids == again and ids != other


def test_processes_get_disjoint_rows_of_the_same_global_batches():
  whole = [_ids(b) for b in pipeline.train_batches(_rows(), 8, 6, seed=0)]
  parts = [[_ids(b) for b in pipeline.train_batches(_rows(), 8, 6, seed=0, process_index=p, process_count=2)]
           for p in range(2)]
  assert [a + b for a, b in zip(*parts)] == whole


def test_iterator_position_resumes_exactly():
  it = pipeline.train_batches(_rows(), 4, 20, seed=1)
  for _ in range(7):
    next(it)
  state = it.get_state()
  rest = [_ids(b) for b in it]
  resumed = pipeline.train_batches(_rows(), 4, 20, seed=1)
  resumed.set_state(state)
  assert [_ids(b) for b in resumed] == rest and len(rest) == 13


def test_eval_covers_each_example_once_and_masks_the_padding():
  batches = list(pipeline.eval_batches(_rows(23), 10))
  assert len(batches) == 3
  ids = [i for b in batches for i, m in zip(_ids(b), b["mask"]) if m]
  assert ids == list(range(23))
  assert batches[-1]["mask"].tolist() == [1.0] * 3 + [0.0] * 7


def test_streaming_rows_match_in_memory_rows():
  source = [{"inputs": np.arange(2) + i, "label": i} for i in range(9)]
  idx = np.array([4, 0, 8])
  a, b = pipeline.Rows(source).take(idx), pipeline.Rows(source, in_memory=False).take(idx)
  assert all(np.array_equal(a[k], b[k]) for k in a)


def test_normalisation_and_one_hot():
  transform = preprocess.make_transform({"input_scale": 1 / 16, "num_classes": 4}, "one_hot")
  out = transform({"inputs": np.array([[0, 8, 16]], np.uint8), "label": np.array([2])})
  np.testing.assert_allclose(out["inputs"], [[0.0, 0.5, 1.0]])
  np.testing.assert_array_equal(out["label"], [[0, 0, 1, 0]])

