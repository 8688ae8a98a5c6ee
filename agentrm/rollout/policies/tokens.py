"""What a policy saw and sampled, as a ready `TokenTrace` for `Turn.tokens`.

The prompt of turn k usually starts with the prompt of turn k−1 (the chat template renders
the same history), so each trace stores only the ids after the prefix it shares with the
previous turn's prompt. The previous prompt is found by the conversation itself: the messages
before the latest assistant message are exactly the messages the previous call was given.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import orjson

from agentrm.hashing import stable_hash
from agentrm.types import Message, TokenTrace, token_hash

_IDENTITY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> identity


def _messages_key(messages: Sequence[Message]) -> bytes:
    try:
        return orjson.dumps(list(messages), option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return repr(list(messages)).encode("utf-8", "surrogatepass")


def tokenizer_identity(tokenizer: Any, model: str = "") -> tuple[str, str]:
    """(tokenizer identity, chat-template hash): name plus a hash of the vocabulary (two
    tokenizers with one name but different ids never look alike), and the template's hash."""
    try:
        cached = _IDENTITY.get(tokenizer)
    except TypeError:  # not weak-referenceable: compute every time
        cached = None
    if cached is None:
        try:
            vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
        except Exception:  # noqa: BLE001 - some tokenizers have no vocab dict
            vocab = [str(getattr(tokenizer, "vocab_size", ""))]
        template = getattr(tokenizer, "chat_template", None) or ""
        cached = (stable_hash(vocab, 12), stable_hash(template, 16) if template else "")
        try:
            _IDENTITY[tokenizer] = cached
        except TypeError:
            pass
    name = model or str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    return f"{name}@{cached[0]}", cached[1]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if list(a[:n]) == list(b[:n]):
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]: bisect the first difference
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class PromptChain:
    """Remembers recent full prompts by conversation, to store each new prompt as
    (prefix shared with the previous turn's prompt, new ids). Thread-safe, bounded."""

    def __init__(self, size: int = 512):
        self.size = size
        self._recent: OrderedDict[bytes, list[int]] = OrderedDict()
        self._lock = threading.Lock()

    def trace(self, messages: Sequence[Message], prompt_ids: Sequence[int],
              completion_ids: Sequence[int], tokenizer: str = "", template_hash: str = "") -> TokenTrace:
        prompt = [int(t) for t in prompt_ids]
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
        with self._lock:
            previous = self._recent.get(_messages_key(messages[:last])) if last is not None else None
            key = _messages_key(messages)
            self._recent[key] = prompt
            self._recent.move_to_end(key)
            while len(self._recent) > self.size:
                self._recent.popitem(last=False)
        shared = common_prefix(previous, prompt) if previous else 0
        return TokenTrace(prompt_ids=prompt[shared:], completion_ids=[int(t) for t in completion_ids],
                          prefix_len=shared, tokenizer=tokenizer, template_hash=template_hash,
                          prompt_hash=token_hash(prompt))
