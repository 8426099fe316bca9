"""data/text.py: Keras Tokenizer/pad_sequences parity, newsgroup stripping, JSON round trip, options."""
import json
import time

import numpy as np
import pytest
from sklearn.datasets import _twenty_newsgroups as sk

from flaxforge.data import fields, text
from flaxforge.core.errors import UserError


# ---- a literal port of keras_preprocessing's Tokenizer and pad_sequences, the behaviour to match ----

KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'  # keras_preprocessing.text.Tokenizer's default


def keras_words(s, filters=KERAS_FILTERS):
  s = s.lower().translate(str.maketrans({c: " " for c in filters}))
  return [w for w in s.split(" ") if w]


def keras_sequences(train, texts, num_words, oov_token=None):
  counts = {}
  for t in train:
    for w in keras_words(t):
      counts[w] = counts.get(w, 0) + 1
  wcounts = sorted(counts.items(), key=lambda x: x[1], reverse=True)
  vocab = ([oov_token] if oov_token else []) + [w for w, _ in wcounts]
  index = dict(zip(vocab, range(1, len(vocab) + 1)))
  out = []
  for t in texts:
    seq = []
    for w in keras_words(t):
      i = index.get(w)
      if i is not None and i < num_words:
        seq.append(i)
      elif oov_token:
        seq.append(1)
    out.append(seq)
  return out


def keras_pad(sequences, maxlen, padding, truncating):
  x = np.zeros((len(sequences), maxlen), np.int32)
  for i, s in enumerate(sequences):
    if s:
      trunc = s[-maxlen:] if truncating == "pre" else s[:maxlen]
      if padding == "post":
        x[i, :len(trunc)] = trunc
      else:
        x[i, -len(trunc):] = trunc
  return x


def random_texts(n, seed):
  rng = np.random.default_rng(seed)
  words = [f"w{i}" for i in range(60)] + ["Hello", "WORLD", "it's", "e-mail", "a.b"]
  seps = [" ", "  ", ", ", ".\n", "\t", "! ", " (", ") "]
  p = 1.0 / np.arange(1, len(words) + 1)  # Zipf-like, with many ties among rare words
  return ["".join(words[w] + seps[s] for w, s in zip(rng.choice(len(words), k, p=p / p.sum()),
                                                         rng.integers(0, len(seps), k)))
          for k in rng.integers(0, 40, n)]


@pytest.mark.parametrize("num_words", [5, 30, 1000])
@pytest.mark.parametrize("oov", [False, True])
@pytest.mark.parametrize("padding,truncating", [("pre", "pre"), ("post", "post"), ("pre", "post")])
def test_matches_keras_tokenizer_and_pad_sequences(num_words, oov, padding, truncating):
  train, texts = random_texts(200, 0), random_texts(50, 1) + ["", "unseen words only"]
  enc = text.TextEncoder.fit(train, num_words=num_words, oov=oov, seq_len=12, padding=padding, truncating=truncating)
  want = keras_pad(keras_sequences(train, texts, num_words, "<OOV>" if oov else None), 12, padding, truncating)
  np.testing.assert_array_equal(enc.encode(texts), want)
  assert enc.encode(texts).dtype == np.int32


def test_vocabulary_ranks_ties_by_first_occurrence():
  enc = text.TextEncoder.fit(["b a c", "A b d"], num_words=10)
  assert enc.vocab == ["b", "a", "c", "d"]  # b and a both twice: b came first
  np.testing.assert_array_equal(enc.encode(["d c a b zz"]), [[0] * 96 + [4, 3, 2, 1]])
  small = text.TextEncoder.fit(["b a c", "A b d"], num_words=3, seq_len=4)  # ids < 3: only b and a
  np.testing.assert_array_equal(small.encode(["d c a b"]), [[0, 0, 2, 1]])
  with_oov = text.TextEncoder.fit(["b a c", "A b d"], num_words=3, oov=True, seq_len=4)
  assert with_oov.vocab == ["b"] and with_oov.vocab_size == 3
  np.testing.assert_array_equal(with_oov.encode(["d c a b"]), [[1, 1, 1, 2]])


def test_keras_filters_and_single_space_split():
  assert fields.Vocabulary.declared()["filters"].default == KERAS_FILTERS
  enc = text.TextEncoder.fit([])
  assert enc.tokens("Hello, World!\tIT'S e-mail:x") == ["hello", "world", "it's", "e", "mail", "x"]
  assert enc.tokens("a\rb") == ["a\rb"]  # Keras splits on " " only; \r is not in its filter set
  assert text.TextEncoder.fit([], lowercase=False, filters="").tokens("Ab,c") == ["Ab,c"]


def test_bigrams_follow_their_first_word():
  enc = text.TextEncoder.fit([], bigrams=True)
  assert enc.tokens("A b, c") == ["a", "a b", "b", "b c", "c"]
  assert enc.tokens("solo") == ["solo"] and enc.tokens("") == []
  fitted = text.TextEncoder.fit(["x y", "x y"], bigrams=True, seq_len=3)
  np.testing.assert_array_equal(fitted.encode(["x y"]), [[1, 2, 3]])


POST = """From: someone@example.com
Subject: Re: engines

In article <1@x.com> other@example.com writes:
> the quoted claim
|another quoted line
My reply, which stays.
He said: quotes go too

--
Some Signature
"""


@pytest.mark.parametrize("post", [POST, "no header here", "a\n\nb\nc", "x\n\n\n-----\nsig\n\n", "\n\nbody"])
def test_stripping_matches_scikit_learn(post):
  assert text.strip_header(post) == sk.strip_newsgroup_header(post)
  assert text.strip_footer(post) == sk.strip_newsgroup_footer(post)
  assert text.strip_quoting(post) == sk.strip_newsgroup_quoting(post)


def test_remove_options_strip_before_tokenizing():
  enc = text.TextEncoder.fit([], remove="headers,footers,quotes")
  assert enc.remove == ("headers", "footers", "quotes")
  assert enc.tokens(POST) == ["my", "reply", "which", "stays"]
  assert "subject" in text.TextEncoder.fit([]).tokens(POST)
  with pytest.raises(UserError, match="signatures"):
    text.TextEncoder.fit([], remove=("signatures",))


def test_json_round_trip_keeps_every_option():
  enc = text.TextEncoder.fit(random_texts(50, 2), num_words=20, seq_len=7, oov=True, bigrams=True,
                             padding="post", truncating="post", remove=("quotes",), filters="!.,")
  back = text.TextEncoder.from_json(json.loads(json.dumps(enc.to_json())))
  assert back == enc
  texts = random_texts(20, 3)
  np.testing.assert_array_equal(back.encode(texts), enc.encode(texts))


def test_bad_options_are_user_errors():
  with pytest.raises(UserError, match="padding"):
    text.TextEncoder.fit([], padding="left")
  with pytest.raises(UserError, match="seq_len"):
    text.TextEncoder.fit([], seq_len=0)
  with pytest.raises(UserError, match="num_words >= 3"):  # padding, OOV and one word
    text.TextEncoder.fit([], num_words=2, oov=True)


def test_an_encoder_saved_before_a_setting_existed_takes_its_declared_default():
  saved = text.TextEncoder.fit(["b a c"], seq_len=4).to_json()
  for newer in ("tokenizer", "char_ngrams", "cls_token", "bigrams"):
    del saved[newer]
  back = text.TextEncoder.from_json(saved)
  assert (back.tokenizer, back.char_ngrams, back.cls_token, back.bigrams) == ("word", 1, False, False)
  assert back.encode(["c a"]).tolist() == [[0, 0, 3, 2]]  # vocabulary b, a, c from id 1


def test_encoder_options_read_config_with_defaults():
  opts = text.encoder_options({"seq_len": 50, "remove": "quotes", "unrelated": 1})
  assert opts["seq_len"] == 50 and opts["num_words"] == 10000 and opts["remove"] == ["quotes"]
  assert "unrelated" not in opts and "vocab" not in opts


def test_encoding_is_fast():
  """A guard against a quadratic fit or encode, in CPU time (all threads), which other work on the machine
  does not inflate as it does wall time."""
  docs = [" ".join(f"word{(i * 7919 + j * 31) % 30000}" for j in range(300)) for i in range(6000)]
  start = time.process_time()
  enc = text.TextEncoder.fit(docs)
  enc.encode(docs)
  assert time.process_time() - start < 10.0  # 1.8M tokens; about 1 s


def test_cls_token_leads_every_row_and_words_fill_the_rest():
  from flaxforge.data.text import TextEncoder  # pylint: disable=g-import-not-at-top
  enc = TextEncoder.fit(["a b c d", "a b"], seq_len=4, num_words=10, cls_token=True, padding="post", truncating="post")
  assert enc.cls_id == 1 and enc.first_id == 2 and enc.vocab_size == 2 + 4
  rows = enc.encode(["a b c d", "b"])
  assert rows[:, 0].tolist() == [1, 1]
  assert rows[0, 1:].tolist() == [enc.ids("a")[0], enc.ids("b")[0], enc.ids("c")[0]]
  assert rows[1, 1:].tolist() == [enc.ids("b")[0], 0, 0]
  assert TextEncoder.from_json(enc.to_json()).encode(["b"]).tolist() == rows[1:].tolist()


def test_character_tokens_and_ngrams():
  enc = text.TextEncoder.fit([], tokenizer="char", char_ngrams=2)
  assert enc.tokens("Ab, c") == ["a", "ab", "b", "bc", "c"]  # filters and spaces dropped, lower-cased
  assert text.TextEncoder.fit(["今天足球", "足球"], tokenizer="char").vocab[:2] == ["足", "球"]
  with pytest.raises(UserError, match="config.data.tokenizer = 'bytes' is not one of: word, char, hf"):
    text.TextEncoder.fit([], tokenizer="bytes")
