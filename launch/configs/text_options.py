"""The text preprocessing fields a text config carries (see data/text.py TextEncoder)."""

KERAS_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'


def add(data, *, num_words=10000, seq_len=100, padding="pre", truncating="pre", lowercase=True,
        filters=KERAS_FILTERS, remove="", oov=False, cls_token=False, bigrams=False, validation_fraction=0.1, split_seed=0,
        tokenizer="word", char_ngrams=1):
  """Adds the fields to `config.data` so each can be overridden from the command line."""
  data.num_words = num_words  # the top-N training words (ids below N)
  data.seq_len = seq_len
  data.padding = padding  # "pre" or "post", as Keras pad_sequences
  data.truncating = truncating
  data.lowercase = lowercase
  data.filters = filters  # characters turned into spaces before splitting
  data.remove = remove  # comma-separated: headers, footers, quotes (as scikit-learn's fetch_20newsgroups)
  data.oov = oov  # True: unknown words map to id 1 instead of being dropped
  data.cls_token = cls_token  # True: a [CLS] id at position 0 (for encoder classifiers that pool it)
  data.bigrams = bigrams
  data.tokenizer = tokenizer  # "word", or "char" for text without spaces (Chinese, Japanese, Thai)
  data.char_ngrams = char_ngrams  # with tokenizer=char: also the 2..N-character n-grams
  data.validation_fraction = validation_fraction  # held out of the training set
  data.split_seed = split_seed
