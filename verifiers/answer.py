"""Answer verifier: the agent's final answer against the ground truth.

Modes: exact (strip only), normalised (SQuAD-style: lowercase, no punctuation or articles,
collapsed whitespace), numeric (last number in the answer within abs/rel tolerance) and f1
(token F1 over normalised words, maxed over ground-truth alternatives).

A known hack is an answer that only restates the question (it shares many words with the
ground truth when the question names it); `restates_question` catches it and scores 0.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from agentrm.protocols import ScoringContext
from agentrm.types import Message, Score, Trajectory
from agentrm.verifiers.base import ScorerBase

MODES = ("exact", "normalised", "numeric", "f1")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*/\s*\d+)?%?")
_SUBMIT_TOOLS = {"submit", "final_answer", "answer", "finish"}


def normalise(text: str) -> str:
    text = text.lower()
    text = "".join(" " if ch in string.punctuation else ch for ch in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens(text: str) -> list[str]:
    return normalise(text).split()


def token_f1(prediction: str, truth: str) -> float:
    """SQuAD token F1 (multiset overlap) of normalised words."""
    pred, gold = tokens(prediction), tokens(truth)
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def parse_number(text: str) -> float | None:
    """The last number in `text` (1,234.5 / -3e2 / 3/4 / 12%); None when there is none."""
    found = [m.group(0) for m in _NUMBER.finditer(text) if any(c.isdigit() for c in m.group(0))]
    if not found:
        return None
    raw = found[-1].replace(",", "").replace(" ", "")
    percent = raw.endswith("%")
    raw = raw.rstrip("%")
    try:
        value = float(Fraction(raw)) if "/" in raw else float(raw)
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if percent else value


def numeric_match(prediction: str, truth: str, abs_tol: float = 1e-6, rel_tol: float = 1e-4) -> bool:
    got, want = parse_number(prediction), parse_number(truth)
    if got is None or want is None or not math.isfinite(got):
        return False
    return abs(got - want) <= abs_tol + rel_tol * abs(want)


def alternatives(truth: str | Sequence[str]) -> list[str]:
    """Ground truth as a list of accepted answers (a JSON list string counts as several)."""
    if isinstance(truth, str):
        stripped = truth.strip()
        if stripped.startswith("["):
            try:
                parsed = json.loads(stripped)
                if isinstance(parsed, list) and parsed:
                    return [str(p) for p in parsed]
            except json.JSONDecodeError:
                pass
        return [truth]
    return [str(t) for t in truth]


def restates_question(answer: str, question: str, truth: Sequence[str], threshold: float = 0.6) -> bool:
    """True when the answer looks more like the question than like any accepted answer."""
    if not question.strip():
        return False
    like_question = token_f1(answer, question)
    like_truth = max((token_f1(answer, t) for t in truth), default=0.0)
    return like_question >= threshold and like_question > like_truth


def match(prediction: str, truth: str | Sequence[str], mode: str = "normalised",
          abs_tol: float = 1e-6, rel_tol: float = 1e-4) -> float:
    """Score in [0, 1] of one prediction against every accepted answer (max)."""
    if mode not in MODES:
        raise ValueError(f"answer mode must be one of {MODES}, got {mode!r}")
    best = 0.0
    for gold in alternatives(truth):
        if mode == "exact":
            value = float(prediction.strip() == gold.strip())
        elif mode == "normalised":
            value = float(normalise(prediction) == normalise(gold))
        elif mode == "numeric":
            value = float(numeric_match(prediction, gold, abs_tol, rel_tol))
        else:
            value = token_f1(prediction, gold)
        best = max(best, value)
    return best


def _text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def extract_answer(trajectory: Trajectory, strict: bool = False) -> str | None:
    """The agent's final answer: a submit-style tool call's argument, else an <answer> tag or
    \\boxed{} in the last assistant message, else (unless `strict`) that message's text."""
    for turn in reversed(trajectory.turns):
        for call in reversed(turn.tool_calls):
            if call.name in _SUBMIT_TOOLS and call.arguments:
                for key in ("answer", "result", "output", "text"):
                    if key in call.arguments:
                        return str(call.arguments[key])
    for message in reversed(trajectory.messages()):
        if message.get("role") != "assistant":
            continue
        text = _text(message.get("content"))
        for pattern in (_ANSWER_TAG, _BOXED):
            found = pattern.findall(text)
            if found:
                return found[-1].strip()
        if strict:
            return None
        if text.strip():
            return text.strip()
    return None


def question_of(trajectory: Trajectory) -> str:
    """The task's instruction: the first user message."""
    messages: list[Message] = trajectory.messages()
    return next((_text(m.get("content")) for m in messages if m.get("role") == "user"), "")


class AnswerVerifier(ScorerBase):
    """Trajectory-level 0/1 (or F1) score of the agent's answer. Abstains without ground truth;
    an infrastructure failure is recorded as such, never as 0."""

    name = "answer"
    version = "1"

    def __init__(self, mode: str = "normalised", abs_tol: float = 1e-6, rel_tol: float = 1e-4,
                 restate_threshold: float = 0.6, answers: dict[str, str] | None = None):
        if mode not in MODES:
            from agentrm.errors import InputError
            raise InputError(f"answer verifier --mode {mode!r}: choose from {', '.join(MODES)}")
        self.mode, self.abs_tol, self.rel_tol = mode, float(abs_tol), float(rel_tol)
        self.restate_threshold = float(restate_threshold)
        self.answers = answers or {}  # task_id → ground truth, when trajectories lack it

    def config(self) -> dict[str, Any]:
        return {"mode": self.mode, "abs_tol": self.abs_tol, "rel_tol": self.rel_tol,
                "restate_threshold": self.restate_threshold}

    def score(self, trajectories: Sequence[Trajectory], context: ScoringContext | None = None) -> list[Score]:
        return [self.score_one(t) for t in trajectories]

    def score_one(self, traj: Trajectory) -> Score:
        if (abstention := self.infrastructure_abstention(traj)) is not None:
            return abstention
        truth = traj.answer if traj.answer is not None else self.answers.get(traj.task_id)
        if truth is None:
            return self.trajectory_score(traj.id, None, abstain="no ground truth")
        answer = extract_answer(traj)
        if answer is None:
            return self.trajectory_score(traj.id, 0.0, reason="no answer")
        golds = alternatives(truth)
        if restates_question(answer, question_of(traj), golds, self.restate_threshold):
            return self.trajectory_score(traj.id, 0.0, answer=answer[:500], reason="restates the question")
        value = match(answer, golds, self.mode, self.abs_tol, self.rel_tol)
        return self.trajectory_score(traj.id, value, answer=answer[:500], mode=self.mode)


def make_scorer(**options: Any) -> AnswerVerifier:
    return AnswerVerifier(**options)
