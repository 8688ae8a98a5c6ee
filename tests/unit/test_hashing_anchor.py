"""anchor_key's one-pass normalisation against the straightforward one (a pattern at a time)."""

from __future__ import annotations

import hashlib
import json
import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from agentrm.hashing import anchor_key, normalise_observation_text

# The previous implementation, kept here as the independent reference.
_SEQUENTIAL = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b"), "<TIME>"),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}(?:\.\d+)?\b"), "<TIME>"),
    (re.compile(r"/tmp/[\w.\-/]+"), "<TMP>"),
    (re.compile(r"\b(?:pid|PID)[ =:]+\d+\b"), "pid <PID>"),
    (re.compile(r"\b0x[0-9a-fA-F]{6,}\b"), "<ADDR>"),
    (re.compile(r"\b[0-9a-f]{12,64}\b"), "<HEX>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds)\b"), "<DURATION>"),
]


def _sequential_text(text: str) -> str:
    for pattern, replacement in _SEQUENTIAL:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def _sequential_key(observation) -> str:
    parts = []
    for message in observation:
        content = message.get("content")
        if not isinstance(content, str):
            content = json.dumps(content, sort_keys=True, default=str)
        parts.append([message.get("role", ""), _sequential_text(content or "")])
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


SHELL_OUTPUT = [
    "total 4\n-rw-r--r-- 1 agent agent 104 file_0_4.py\n",
    "started 2024-05-01T10:11:12.123Z, pid 4242, took 35 ms\n",
    "wrote /tmp/tmp.abc123/out.txt commit 0123456789abcdef0123 at 10:11:12",
    "Segfault at 0xdeadbeef01 (PID=77) after 1.5 s; elapsed 3 seconds",
    "ran 12 tests in 0.034s\n\nOK", "no digits here at all", "", "é ü 中文 \t tabs\r\n",
    'json {"a": 1, "b": [1, 2]} and "quotes" \\ backslash \x01\x1f\x7f',
]


def test_realistic_shell_output_keys_are_unchanged():
    for text in SHELL_OUTPUT:
        assert normalise_observation_text(text) == _sequential_text(text), text
        obs = [{"role": "tool", "content": text}, {"role": "user", "content": [{"type": "text", "text": text}]}]
        assert anchor_key(obs) == _sequential_key(obs)


def test_examples_of_each_volatile_fragment():
    text = "2024-05-01 10:11:12 /tmp/x.y pid: 12 0xabcdef12 deadbeefcafe12 12ms"
    assert normalise_observation_text(text) == "<TIME> <TMP> pid <PID> <ADDR> <HEX> <DURATION>"


_ALPHABET = "0123456789abcdefxpPIDmsec:-./T Z+\n\tü"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=_ALPHABET, max_size=40), min_size=1, max_size=4))
def test_random_text_matches_the_sequential_form_unless_fragments_overlap(chunks):
    text = " ".join(chunks)
    # Both forms agree whenever no two patterns' matches overlap (the documented tie rule).
    spans = sorted(m.span() for p, _ in _SEQUENTIAL for m in p.finditer(text))
    overlapping = any(a[1] > b[0] for a, b in zip(spans, spans[1:], strict=False))
    if not overlapping:
        assert normalise_observation_text(text) == _sequential_text(text)


def test_bulk_random_keys_match():
    rng = random.Random(0)
    for _ in range(2000):
        text = "".join(rng.choice(["ls ", "a1b2 ", "12:", "34", "\n", "file_", "é", "\x00", '"'])
                       for _ in range(rng.randrange(20)))
        spans = sorted(m.span() for p, _ in _SEQUENTIAL for m in p.finditer(text))
        if any(a[1] > b[0] for a, b in zip(spans, spans[1:], strict=False)):
            continue
        obs = [{"role": "tool", "content": text}]
        assert anchor_key(obs) == _sequential_key(obs), repr(text)
