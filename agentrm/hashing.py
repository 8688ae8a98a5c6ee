"""Stable content hashes: config hashes for scores, anchor-state keys for GiGPO."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from agentrm.types import Message


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace), truncated to `length` hex chars."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# Volatile fragments of shell output that differ between otherwise identical states. Anchor
# states only recur across rollouts if these are normalised away (ALGORITHMS.md §3.8 item 4).
_VOLATILE = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?\b"), "<TIME>"),
    (re.compile(r"\b\d{2}:\d{2}:\d{2}(?:\.\d+)?\b"), "<TIME>"),
    (re.compile(r"/tmp/[\w.\-/]+"), "<TMP>"),
    (re.compile(r"\b(?:pid|PID)[ =:]+\d+\b"), "pid <PID>"),
    (re.compile(r"\b0x[0-9a-fA-F]{6,}\b"), "<ADDR>"),
    (re.compile(r"\b[0-9a-f]{12,64}\b"), "<HEX>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|s|sec|seconds)\b"), "<DURATION>"),
]


def normalise_observation_text(text: str) -> str:
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


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
    return stable_hash(parts)
