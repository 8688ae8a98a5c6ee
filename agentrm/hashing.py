"""Stable content hashes: config hashes for scores, anchor-state keys for GiGPO."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import orjson

from agentrm.types import Message


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace), truncated to `length` hex chars."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# Volatile fragments of shell output that differ between otherwise identical states. Anchor
# states only recur across rollouts if these are normalised away (ALGORITHMS.md §3.8 item 4).
# Each entry: (pattern, replacement, necessary condition). The condition is a cheap test that
# every match needs (a substring, any of several substrings, or a regex); the patterns whose
# condition holds are joined into one alternation and applied in a single scan (import spends
# most of its time here otherwise). Where matches of two patterns overlap, the leftmost wins,
# and at one position the earlier pattern.
_VOLATILE: list[tuple[str, str, Any]] = [
    (r"(?<!\w)\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b", "<TIME>", ":"),
    (r"(?<!\w)\d{2}:\d{2}:\d{2}(?:\.\d+)?\b", "<TIME>", ":"),
    (r"(?<!\w)\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}\b", "<TIME>", ":"),  # ls --time-style=long-iso
    # `ls -l` dates: "Dec  4 03:40" (this year) or "Dec  4  2025" (older)
    (r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2} +(?:\d{1,2}:\d{2}|\d{4})\b",
     "<DATE>", re.compile("Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec")),
    (r"/tmp/[\w.\-/]+", "<TMP>", "/tmp/"),
    (r"(?<!\w)(?:pid|PID)[ =:]+\d+\b", "pid <PID>", ("pid", "PID")),
    (r"(?<!\w)0x[0-9a-fA-F]{6,}\b", "<ADDR>", "0x"),
    (r"(?<!\w)[0-9a-f]{12,64}\b", "<HEX>", re.compile("[0-9a-f]{12}")),
    (r"(?<!\w)\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds)\b", "<DURATION>", re.compile(r"\d\s?m?s")),
]
_REPLACEMENT = {f"v{i}": rep for i, (_, rep, _) in enumerate(_VOLATILE)}


@functools.lru_cache(maxsize=128)
def _combined(which: tuple[int, ...]) -> re.Pattern:
    return re.compile("|".join(f"(?P<v{i}>{_VOLATILE[i][0]})" for i in which))


def _replace(match: re.Match) -> str:
    name = match.lastgroup  # every alternative is a named group: never None in practice
    return _REPLACEMENT[name] if name else match.group(0)


# Each distinct condition once, with the patterns it admits (the three clock patterns share ":").
_CONDITIONS: dict[Any, tuple[int, ...]] = {}
for _i, (_, _, _need) in enumerate(_VOLATILE):
    _CONDITIONS[_need] = _CONDITIONS.get(_need, ()) + (_i,)


def _needed(text: str) -> tuple[int, ...]:
    """Indices of the patterns whose necessary condition holds in `text`.

    Literal conditions are C substring searches and each distinct condition is tested once:
    half the cost of one regex alternation over all conditions (bench/import_traces.py)."""
    out: list[int] = []
    for need, which in _CONDITIONS.items():
        if isinstance(need, str):
            if need in text:
                out.extend(which)
        elif isinstance(need, tuple):
            if any(n in text for n in need):
                out.extend(which)
        elif need.search(text):
            out.extend(which)
    return tuple(sorted(out)) if out else ()


def normalise_observation_text(text: str) -> str:
    which = _needed(text)
    if which:
        text = _combined(which).sub(_replace, text)
    return " ".join(text.split())


def _dumps(parts: list) -> bytes:
    try:  # same bytes as json.dumps(..., separators=(",", ":"), ensure_ascii=False) for str lists
        return orjson.dumps(parts)
    except (TypeError, orjson.JSONEncodeError):  # lone surrogates
        return json.dumps(parts, separators=(",", ":"), ensure_ascii=False).encode("utf-8",
                                                                                   "surrogatepass")


def anchor_key(observation: Sequence[Message]) -> str:
    """Key of the environment state a turn acted on: its observation without history.

    Only role and content count (tool-call ids are random per rollout).
    """
    parts = []
    for message in observation:
        content = message.get("content")
        if not isinstance(content, str):
            content = json.dumps(content, sort_keys=True, default=str)
        parts.append([message.get("role", ""), normalise_observation_text(content or "")])
    return hashlib.sha256(_dumps(parts)).hexdigest()[:16]
