"""Chat conversations rendered with the model's own chat template and tokenized with its own tokenizer.

A conversation is the OpenAI / Hugging Face list of messages `[{"role": ..., "content": ...}, ...]`. The
template is the model folder's `chat_template.jinja`, else the `chat_template` of its
`tokenizer_config.json` (the file wins when both exist, as in transformers). It is rendered with jinja2 in
the environment transformers builds (`transformers/utils/chat_template_utils.py`, 5.23.0:
`_cached_compile_jinja_template`, `render_jinja_template`): an ImmutableSandboxedEnvironment with
trim_blocks and lstrip_blocks, the loopcontrols extension, a `{% generation %}` tag that records the
characters it renders, a `tojson` filter that does not escape HTML, and the globals raise_exception,
strftime_now, dict and namespace. Its variables are `messages`, `tools`, `documents`,
`add_generation_prompt` and the special tokens of tokenizer_config.json (every `*_token` field, as
`apply_chat_template` passes `special_tokens_map`). The text is then encoded by `tokenizer.json` through
the `tokenizers` library without the post-processor's special tokens (the template writes them).

The loss mask marks the assistant's tokens. With `{% generation %}` blocks it marks every token that
overlaps the characters a block rendered: the same tokens as transformers' `return_assistant_tokens_mask`
(which takes the tokens of a span's first and last character) whenever those characters belong to tokens,
as they always do with byte-level BPE; where a tokenizer drops them (whitespace in a word-level vocabulary)
transformers stops marking, that span and every later one, while this still marks the span's tokens.

A template without such blocks (transformers warns and marks nothing) is masked by prefixes instead: an
assistant message i's span runs from the end of `render(messages[:i], add_generation_prompt=True)` (the
prompt, the assistant header included) to the end of `render(messages[:i + 1])`, less trailing
whitespace, so it holds the reply and the template's end-of-turn text (Llama 3's <|eot_id|>, ChatML's
<|im_end|>) but not the newline after it. This needs a template that renders a conversation's beginning
the same whatever follows; one that does not (e.g. one that drops the reasoning of earlier turns) raises
UserError naming the fix: add `{% generation %}` blocks.
"""
import contextlib
import datetime
import json
import os
import re

import jinja2
import jinja2.ext
import jinja2.sandbox
import jinja2.utils
import numpy as np
import tokenizers

from flaxforge.core.errors import UserError

TEMPLATE_FILE = "chat_template.jinja"
LOSS_ON = ("assistant", "all")
_SENTINEL = "\ue000flaxforge-reply\ue000"  # a private-use marker that no template rewrites
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")
_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


class _GenerationTracker(jinja2.ext.Extension):
  """`{% generation %}...{% endgeneration %}`: renders its body unchanged and, while `tracking` is active,
  records the body's (start, end) character offsets in the output rendered so far."""
  tags = {"generation"}

  def __init__(self, environment):
    super().__init__(environment)
    environment.extend(tracking=self.tracking)
    self._blocks = self._spans = None

  def parse(self, parser):
    lineno = next(parser.stream).lineno
    body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
    return jinja2.nodes.CallBlock(self.call_method("_generation"), [], [], body).set_lineno(lineno)

  def _generation(self, caller):
    text = caller()
    if self._spans is not None:
      start = len("".join(self._blocks))
      self._spans.append((start, start + len(text)))
    return text

  @contextlib.contextmanager
  def tracking(self, blocks: list, spans: list):
    self._blocks, self._spans = blocks, spans
    try:
      yield
    finally:
      self._blocks = self._spans = None


class _TemplateDict:
  """`dict` inside a template: calls and fromkeys only (no attribute access to break out with)."""

  def __call__(self, *args, **kwargs):
    return dict(*args, **kwargs)

  def fromkeys(self, *args, **kwargs):
    return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(jinja2.utils.Namespace):
  """`namespace` inside a template, refusing underscore-prefixed attributes (CPython internals)."""

  def __init__(*args, **kwargs):  # pylint: disable=no-method-argument
    self, args = args[0], args[1:]
    attrs = dict(*args, **kwargs)
    for name in attrs:
      _TemplateNamespace._check(name)
    jinja2.utils.Namespace.__init__(self, attrs)

  def __setitem__(self, name, value):
    _TemplateNamespace._check(name)
    jinja2.utils.Namespace.__setitem__(self, name, value)

  @staticmethod
  def _check(name):
    if isinstance(name, str) and name.startswith("_"):
      raise jinja2.exceptions.SecurityError(f"a chat template cannot set the attribute {name!r} on a namespace")


def _raise_exception(message):
  raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
  return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def compile_template(source: str) -> jinja2.Template:
  """A chat template's source compiled in transformers' environment (see the module docstring)."""
  env = jinja2.sandbox.ImmutableSandboxedEnvironment(
      trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTracker, jinja2.ext.loopcontrols])
  env.filters["tojson"] = _tojson
  env.globals.update(raise_exception=_raise_exception, strftime_now=lambda f: datetime.datetime.now().strftime(f),
                     dict=_TemplateDict(), namespace=_TemplateNamespace)
  return env.from_string(source)


def _read_json(path) -> dict:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    return {}
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read {path} ({e}); restore the file from the model's repository") from None


def _token_text(value):
  """A special token as tokenizer_config.json writes it: a string or an AddedToken object."""
  return value.get("content") if isinstance(value, dict) else value


def checked(messages) -> list[dict]:
  """The messages as the template sees them: keys whose value is None dropped (as apply_chat_template
  does) and reasoning copied under each name templates read (`reasoning_content`, `thinking`).

  UserError (one line) for a conversation that is not a non-empty list of objects, a message without a
  role, or a turn with no content (missing, null or empty; an assistant turn with tool_calls may omit it)."""
  if not isinstance(messages, list) or not messages:
    raise UserError("'messages' must be a non-empty list of {\"role\", \"content\"} objects; fix the row")
  out = []
  for i, message in enumerate(messages):
    if not isinstance(message, dict):
      raise UserError(f"message {i} is {type(message).__name__}, not an object; write it as "
                      "{\"role\": ..., \"content\": ...}")
    message = {k: v for k, v in message.items() if v is not None}
    role = message.get("role")
    if not isinstance(role, str) or not role:
      raise UserError(f"message {i} has no 'role'; give every message a role (system, user or assistant)")
    content = message.get("content")
    if (content is None or content == "" or content == []) and not message.get("tool_calls"):
      raise UserError(f"message {i} ({role}) has no content; give the turn a non-empty 'content' or drop it")
    reasoning = next((message[k] for k in _REASONING_FIELDS if message.get(k) is not None), None)
    if reasoning is not None:
      message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
    out.append(message)
  return out


class ChatTemplate:
  """A Hugging Face model folder's chat template and tokenizer (see the module docstring).

  Raises UserError when the folder has no tokenizer.json or no chat template."""

  def __init__(self, model_dir: str):
    self.model_dir = str(model_dir)
    config = {**_read_json(os.path.join(model_dir, "special_tokens_map.json")),
              **_read_json(os.path.join(model_dir, "tokenizer_config.json"))}
    self.source = self._source(config)
    self.template = compile_template(self.source)
    self.has_generation_blocks = bool(_GENERATION_TAG.search(self.source))
    self.special_tokens = {k: _token_text(v) for k, v in config.items()
                           if k.endswith("_token") and isinstance(_token_text(v), str)}
    extra = config.get("extra_special_tokens")
    if isinstance(extra, dict):
      self.special_tokens.update({k: _token_text(v) for k, v in extra.items() if isinstance(_token_text(v), str)})
    file = os.path.join(model_dir, "tokenizer.json")
    try:
      self.tokenizer = tokenizers.Tokenizer.from_file(file)
    except Exception as e:  # tokenizers raises a bare Exception for a missing or malformed file
      raise UserError(f"cannot read the tokenizer {file} ({e}); copy tokenizer.json from the model's "
                      "repository into the folder") from None
    self.tokenizer.no_truncation()
    self.tokenizer.no_padding()
    self.generation_config = _read_json(os.path.join(model_dir, "generation_config.json"))

  def to_json(self) -> dict:
    """What `from_json` needs besides the tokenizer: the template's source, the special tokens it reads and
    generation_config.json's end ids (a run stores it, so generate and serve need no model folder)."""
    return {"source": self.source, "special_tokens": dict(self.special_tokens), "model_dir": self.model_dir,
            "generation_config": {k: v for k, v in self.generation_config.items() if k == "eos_token_id"}}

  @classmethod
  def from_json(cls, d: dict, tokenizer: tokenizers.Tokenizer) -> "ChatTemplate":
    """The template `to_json` wrote, over `tokenizer` (the run's stored tokenizer.json)."""
    self = cls.__new__(cls)
    self.model_dir, self.source = d.get("model_dir", ""), d["source"]
    self.template = compile_template(self.source)
    self.has_generation_blocks = bool(_GENERATION_TAG.search(self.source))
    self.special_tokens, self.generation_config = dict(d["special_tokens"]), dict(d.get("generation_config", {}))
    self.tokenizer = tokenizer
    self.tokenizer.no_truncation()
    self.tokenizer.no_padding()
    return self

  def _source(self, config) -> str:
    path = os.path.join(self.model_dir, TEMPLATE_FILE)
    if os.path.isfile(path):
      with open(path, encoding="utf-8") as f:
        return f.read()
    template = config.get("chat_template")
    if isinstance(template, list):  # the older list of named templates: transformers uses "default"
      template = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}.get("default")
    if not isinstance(template, str) or not template.strip():
      raise UserError(f"{self.model_dir} has no chat template ({TEMPLATE_FILE}, or chat_template in "
                      f"tokenizer_config.json); copy {TEMPLATE_FILE} from the model's instruct/chat release "
                      "into the folder, or train on prompt/completion rows")
    return template

  def render(self, messages, *, add_generation_prompt: bool = False, tools=None, documents=None,
             spans: list | None = None) -> str:
    """The conversation as the template writes it. With `spans` (a list), appends the (start, end)
    character range of each `{% generation %}` block (not thread-safe: the tracker lives on the template).
    UserError for bad messages (`checked`) or when the template refuses the conversation (its
    raise_exception, e.g. roles that do not alternate)."""
    kwargs = dict(messages=checked(messages), tools=tools, documents=documents,
                  add_generation_prompt=add_generation_prompt, **self.special_tokens)
    try:
      if spans is None:
        return self.template.render(**kwargs)
      blocks = []
      with self.template.environment.tracking(blocks, spans):
        for block in self.template.generate(**kwargs):
          blocks.append(block)
      return "".join(blocks)
    except jinja2.exceptions.TemplateError as e:
      raise UserError(f"the chat template of {self.model_dir} refuses the conversation ({e}); fix the "
                      "conversation") from None

  def assistant_spans(self, messages) -> tuple[str, list[tuple[int, int]]]:
    """(rendered text, the character spans of the assistant's turns), by `{% generation %}` blocks or,
    without them, by prefixes (see the module docstring)."""
    messages = checked(messages)
    if self.has_generation_blocks:
      spans = []
      text = self.render(messages, spans=spans)
      return text, spans
    text, spans = self.render(messages), []
    for i, message in enumerate(messages):
      if message.get("role") != "assistant":
        continue
      if not i:
        raise UserError("the conversation starts with the assistant, and without {% generation %} blocks in "
                        "the chat template its reply cannot be told from the template's preamble; start with a "
                        "system or user message")
      prompt = self.render(messages[:i], add_generation_prompt=True)
      turn = self.render(messages[:i + 1])
      if not (text.startswith(prompt) and text.startswith(turn) and len(turn) >= len(prompt)):
        raise UserError(f"the chat template of {self.model_dir} renders earlier turns differently once later "
                        "ones follow, so the assistant's tokens cannot be found; add {% generation %} ... "
                        f"{{% endgeneration %}} around the assistant's reply in {TEMPLATE_FILE}, or set the "
                        "loss on every token")
      spans.append((len(prompt), len(prompt) + len(turn[len(prompt):].rstrip())))
    return text, spans

  def encode(self, messages, *, loss_on: str = "assistant") -> tuple[np.ndarray, np.ndarray]:
    """A conversation as (ids int32 [n], loss_mask int32 [n]): 1 on the tokens that overlap an assistant
    span (loss_on="assistant") or on every token (loss_on="all"). For next-token training the target of
    position t is token t + 1, so the label mask is loss_mask[1:]."""
    if loss_on not in LOSS_ON:
      raise UserError(f"unknown chat loss {loss_on!r}; use one of: {', '.join(LOSS_ON)}")
    if loss_on == "all":
      encoding = self.tokenizer.encode(self.render(messages), add_special_tokens=False)
      return np.asarray(encoding.ids, np.int32), np.ones(len(encoding.ids), np.int32)
    text, spans = self.assistant_spans(messages)
    encoding = self.tokenizer.encode(text, add_special_tokens=False)
    offsets = np.asarray(encoding.offsets, np.int64).reshape(-1, 2)
    mask = np.zeros(len(encoding.ids), np.int32)
    for start, end in spans:  # from the span's first token to its last, as transformers' char_to_token pair
      inside = np.flatnonzero((offsets[:, 0] < end) & (offsets[:, 1] > start) & (offsets[:, 1] > offsets[:, 0]))
      if inside.size:
        mask[inside[0]:inside[-1] + 1] = 1
    return np.asarray(encoding.ids, np.int32), mask

  def prompt_ids(self, messages, **kwargs) -> np.ndarray:
    """The token ids that ask the model for the next assistant turn (add_generation_prompt=True), int32
    [n]: what generation and serving feed the model."""
    text = self.render(messages, add_generation_prompt=True, **kwargs)
    return np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, np.int32)

  def stop_ids(self) -> tuple[int, ...]:
    """The token ids that end an assistant turn, first the template's end-of-turn token, then the
    eos_token and generation_config.json's eos_token_id(s), without repeats.

    The end-of-turn token is found by rendering [user, assistant(marker)] and taking the first added
    (special) token the template writes after the marker: <|eot_id|> for Llama 3, <|im_end|> for ChatML
    (Qwen2). A template that writes none there contributes nothing."""
    ids = []
    text = self.render([{"role": "user", "content": "hi"}, {"role": "assistant", "content": _SENTINEL}])
    if _SENTINEL in text:
      after = text[text.index(_SENTINEL) + len(_SENTINEL):]
      added = self.tokenizer.get_added_tokens_decoder()
      ids += [next((i for i in self.tokenizer.encode(after, add_special_tokens=False).ids if i in added), None)]
    eos = self.special_tokens.get("eos_token")
    ids.append(self.tokenizer.token_to_id(eos) if eos else None)
    config_eos = self.generation_config.get("eos_token_id")
    ids += config_eos if isinstance(config_eos, list) else [config_eos]
    return tuple(dict.fromkeys(int(i) for i in ids if isinstance(i, int)))
