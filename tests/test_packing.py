"""data/packing.py: rows, segment ids, positions and masks of packed examples, and exact resume."""
import collections
import json

import numpy as np
import pytest

from flaxforge.core.errors import UserError
from flaxforge.data import packing


def _examples(lengths, seed=0):
  """next_token examples whose every token says which example it came from (id * 1000 + position)."""
  rng = np.random.default_rng(seed)
  out = []
  for i, n in enumerate(lengths):
    ids = i * 1000 + np.arange(n + 1)
    out.append(packing.next_token(ids, rng.integers(0, 2, n + 1)))
  return out


def _chat_lengths(n, seq_len, seed=0):
  """A chat-like length mix: log-normal with a median of seq_len / 6, a few longer than seq_len."""
  rng = np.random.default_rng(seed)
  return np.maximum(1, rng.lognormal(np.log(seq_len / 6), 0.9, n).astype(int))


def test_trl_pack_dataset_docstring_example():
  """trl/data_utils.py `pack_dataset`'s example, input_ids [[1..5], [6, 7], [8, 9, 10], [11]] at
  seq_length 4: "bfd" gives [[1, 2, 3, 4], [8, 9, 10, 11], [6, 7]] and "bfd_split" gives
  [[1, 2, 3, 4], [8, 9, 10, 5], [6, 7, 11]]."""
  ids = [[1, 2, 3, 4, 5], [6, 7], [8, 9, 10], [11]]
  examples = [{"inputs": np.asarray(x)} for x in ids]
  for overflow, want in [("truncate", [[1, 2, 3, 4], [8, 9, 10, 11], [6, 7]]),
                         ("split", [[1, 2, 3, 4], [8, 9, 10, 5], [6, 7, 11]])]:
    packer = packing.Packer([len(x) for x in ids], 4, shuffle=False, overflow=overflow, repeat=False)
    rows = packer.next_rows(10)
    packed = packing.pack(examples, rows, 4)
    got = [row[seg > 0].tolist() for row, seg in zip(packed["inputs"], packed["segment_ids"])]
    assert got == want, overflow


def test_rows_hold_whole_examples_with_segments_and_positions():
  seq_len = 64
  lengths = _chat_lengths(300, seq_len)
  lengths[:3] = [64, 1, 200]  # exactly a row, one position, longer than a row
  examples = _examples(lengths)
  packer = packing.Packer(lengths, seq_len, window=50, seed=3, repeat=False)
  rows = packer.next_rows(10_000)
  packed = packing.pack(examples, rows, seq_len)
  seen = collections.Counter()
  for r, row in enumerate(rows):
    segments = packed["segment_ids"][r]
    assert sum(stop - start for _, start, stop in row) <= seq_len
    assert segments.max() == len(row)
    for segment, (index, start, stop) in enumerate(row, 1):
      at = np.flatnonzero(segments == segment)
      assert at.tolist() == list(range(at[0], at[0] + stop - start))  # contiguous
      np.testing.assert_array_equal(packed["positions"][r, at], np.arange(stop - start))
      for key in ("inputs", "label", "loss_mask"):
        np.testing.assert_array_equal(packed[key][r, at], examples[index][key][start:stop])
      seen[index] += 1
    pad = segments == 0
    assert not packed["loss_mask"][r, pad].any() and not packed["positions"][r, pad].any()
    if pad.any():
      assert pad[np.argmax(pad):].all()  # padding only at the end
  assert sorted(seen) == list(range(len(lengths)))  # one epoch: every example once,
  assert set(seen.values()) == {1}  # in one row (truncated to seq_len, see below)
  long_row = next(row for row in rows if any(p[0] == 2 for p in row))
  assert [(s, e) for i, s, e in long_row if i == 2] == [(0, seq_len)]


def test_split_overflow_keeps_every_token_in_pieces_of_seq_len():
  seq_len = 16
  lengths = [40, 5, 16, 3, 9]
  packer = packing.Packer(lengths, seq_len, shuffle=False, overflow="split", repeat=False)
  rows = packer.next_rows(100)
  pieces = sorted(p for row in rows for p in row)
  assert [(s, e) for i, s, e in pieces if i == 0] == [(0, 16), (16, 32), (32, 40)]
  assert [(i, s, e) for i, s, e in pieces if i != 0] == [(1, 0, 5), (2, 0, 16), (3, 0, 3), (4, 0, 9)]
  packed = packing.pack(_examples(lengths), rows, seq_len)
  assert (packed["segment_ids"] > 0).sum() == sum(lengths)
  assert set(packed["positions"][packed["segment_ids"] > 0].tolist()) <= set(range(16))


def test_resume_from_a_saved_state_gives_the_same_rows():
  lengths = _chat_lengths(500, 128, seed=1)
  make = lambda: packing.Packer(lengths, 128, window=64, seed=7, overflow="split")
  straight = make()
  first = straight.next_rows(37)
  state = json.loads(json.dumps(straight.get_state()))  # as a checkpoint stores it
  rest = straight.next_rows(400)  # runs into the next epochs
  resumed = make()
  resumed.set_state(state)
  assert resumed.next_rows(400) == rest
  assert resumed.stats() == straight.stats()
  assert make().next_rows(37) == first  # deterministic
  other = packing.Packer(lengths, 128, window=64, seed=8, overflow="split").next_rows(37)
  assert other != first
  assert state["epoch"] == 0 and straight.get_state()["epoch"] >= 1


def test_epochs_change_which_examples_share_a_row():
  lengths = _chat_lengths(200, 64, seed=2)
  packer = packing.Packer(lengths, 64, window=50, seed=0, repeat=True)
  per_epoch = collections.defaultdict(set)
  while packer.get_state()["epoch"] < 2:
    state = packer.get_state()
    row = next(packer)
    per_epoch[state["epoch"]].add(tuple(sorted(i for i, _, _ in row)))
  assert per_epoch[0] != per_epoch[1]


def test_padding_statistic():
  seq_len = 512
  lengths = _chat_lengths(2000, seq_len, seed=4)
  packer = packing.Packer(lengths, seq_len, window=1000, seed=0, repeat=False)
  rows = packer.next_rows(10 ** 6)
  stats = packer.stats()
  kept = np.minimum(lengths, seq_len)
  assert stats["tokens"] == kept.sum() and stats["unpacked_rows"] == len(lengths) and stats["rows"] == len(rows)
  unpacked_padding = len(lengths) * seq_len - kept.sum()
  packed_padding = len(rows) * seq_len - kept.sum()
  assert stats["padding_removed"] == pytest.approx(1 - packed_padding / unpacked_padding)
  # BFD within windows of 1000 comes within 2% of the fewest rows the tokens could fill
  assert len(rows) <= 1.02 * np.ceil(kept.sum() / seq_len) + 2
  assert stats["padding_removed"] > 0.9 and stats["rows_ratio"] > 4


def test_best_fit_decreasing_puts_each_piece_in_the_tightest_bin():
  # 7 opens bin 0 (3 free), 6 bin 1 (4 free), 5 bin 2 (5 free); 4 fits bins 1 and 2, tightest is 1;
  # 3 fits 0 and 2, tightest 0; 2 fits only 2.
  assert packing.best_fit_decreasing([3, 7, 2, 6, 5, 4], 10) == [[1, 0], [3, 5], [4, 2]]


def test_bad_settings_are_user_errors():
  with pytest.raises(UserError, match="overflow"):
    packing.Packer([3], 8, overflow="wrap")
  with pytest.raises(UserError, match="window"):
    packing.Packer([3], 8, window=0)
  with pytest.raises(UserError, match="empty"):
    packing.Packer([0, 0], 8)
