"""Combine stored scores into one per-turn reward: weighted sums, log-sigmoid AND, G-RA gate.

The math is pure (numpy in, numpy out); `combine_scores` only arranges Score rows into
per-turn vectors, so the CLI (`agentrm rewards --combine SPEC`) and training code share it.

SPEC grammar (docs/verifiers.md has examples):

    SPEC      := TERM ("+" TERM)* (";" OPTION)*
    TERM      := [WEIGHT "*"] SCORER ("|" TRANSFORM)*        SCORER = name or name@confighash
    TRANSFORM := clip[:η] | delta[:keep|drop] | min | softmin[:T] | logit | lsig[:ref]
    OPTION    := gate=SCORER>=δ | missing=zero|none

Turn-level scorers give a vector over turns; trajectory-level scorers (outcomes) give a scalar
that is transformed as a scalar and placed on the last turn. With a gate, turn-level terms
count only when the gate scorer's outcome is ≥ δ (ALGORITHMS §8); outcome terms always count.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agentrm.errors import InputError
from agentrm.rewards import transforms
from agentrm.types import Score, ScoreLevel, Trajectory


def log_sigmoid(x: np.ndarray | float) -> np.ndarray:
    """log σ(x) = −log(1 + e^{−x}), computed without overflow."""
    return -np.logaddexp(0.0, -np.asarray(x, dtype=float))


def logit(p: np.ndarray | float, eps: float = 1e-6) -> np.ndarray:
    """Probabilities → logits (REWARD_MODELS: convert probabilities before LSC), clamped so a
    hard verifier's 0 or 1 gives a large finite value instead of ±∞."""
    q = np.clip(np.asarray(p, dtype=float), eps, 1.0 - eps)
    return np.log(q) - np.log1p(-q)


def log_sigmoid_and(signals: Sequence[np.ndarray], references: Sequence[float] | None = None) -> np.ndarray:
    """LSC "logical AND" (ALGORITHMS §9): Σ_j log σ(r_j − r_ref,j).

    Each term is the log-probability that the output is good on property j; the sum is the
    log-probability it is good on all. Concave: improving a poor signal pays more than pushing
    a good one further, which limits hacking of any single scorer.
    """
    if not signals:
        raise ValueError("log_sigmoid_and needs at least one signal")
    refs = list(references) if references is not None else [0.0] * len(signals)
    if len(refs) != len(signals):
        raise ValueError(f"{len(signals)} signals but {len(refs)} references")
    return sum(log_sigmoid(np.asarray(s, dtype=float) - r) for s, r in zip(signals, refs, strict=True))


def weighted_sum(signals: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    if len(signals) != len(weights):
        raise ValueError(f"{len(signals)} signals but {len(weights)} weights")
    if not signals:
        raise ValueError("weighted_sum needs at least one signal")
    return sum(w * np.asarray(s, dtype=float) for s, w in zip(signals, weights, strict=True))


# ---------------------------------------------------------------- SPEC parsing

_TRANSFORMS = {"clip", "delta", "min", "softmin", "logit", "lsig"}
_TERM = re.compile(r"^\s*(?:(?P<w>[-+]?\d+(?:\.\d*)?|[-+]?\.\d+)\s*\*\s*)?(?P<s>[A-Za-z][\w.\-]*(?:@\w+)?)\s*$")
_GATE = re.compile(r"^\s*(?P<s>[A-Za-z][\w.\-]*(?:@\w+)?)\s*>=\s*(?P<d>[-+]?\d+(?:\.\d*)?)\s*$")


@dataclass
class Term:
    scorer: str
    config_hash: str | None
    weight: float = 1.0
    transforms: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def label(self) -> str:
        parts = [self.scorer] + [f"{n}:{a}" if a is not None else n for n, a in self.transforms]
        text = "|".join(parts)
        return text if self.weight == 1.0 else f"{self.weight:g}*{text}"


@dataclass
class Spec:
    terms: list[Term]
    gate: tuple[str, str | None, float] | None = None
    missing: str = "zero"


def _split_scorer(text: str) -> tuple[str, str | None]:
    name, _, chash = text.partition("@")
    return name, chash or None


def _parse_term(text: str, spec_text: str) -> Term:
    head, *rest = text.split("|")
    match = _TERM.match(head)
    if not match:
        raise InputError(f"--combine {spec_text!r}: cannot read term {text.strip()!r} (want [WEIGHT*]SCORER|TRANSFORM…)")
    name, chash = _split_scorer(match["s"])
    term = Term(name, chash, float(match["w"]) if match["w"] else 1.0)
    for item in rest:
        tname, _, arg = item.strip().partition(":")
        if tname not in _TRANSFORMS:
            raise InputError(f"--combine {spec_text!r}: unknown transform {tname!r}; choose from {', '.join(sorted(_TRANSFORMS))}")
        if tname == "delta" and arg and arg not in transforms.DELTA_LAST:
            raise InputError(f"--combine {spec_text!r}: delta takes keep or drop, got {arg!r}")
        if tname in {"clip", "softmin", "lsig"} and arg:
            try:
                float(arg)
            except ValueError:
                raise InputError(f"--combine {spec_text!r}: {tname} needs a number, got {arg!r}") from None
        term.transforms.append((tname, arg or None))
    return term


def parse_spec(text: str) -> Spec:
    """Parse a --combine SPEC; InputError naming the bad part."""
    if not text or not text.strip():
        raise InputError("--combine: empty SPEC (example: 'tests + 0.5*prm|clip:0.8 ; gate=tests>=1')")
    body, *options = text.split(";")
    parts = body.split("+")
    if not body.strip() or any(not p.strip() for p in parts):
        raise InputError(f"--combine {text!r}: an empty term (a '+' with nothing on one side)")
    spec = Spec([_parse_term(t, text) for t in parts])
    for option in options:
        if not option.strip():
            continue
        key, _, value = option.partition("=")
        key = key.strip()
        if key == "gate":
            match = _GATE.match(value)
            if not match:
                raise InputError(f"--combine {text!r}: gate wants gate=SCORER>=δ, got {value.strip()!r}")
            name, chash = _split_scorer(match["s"])
            spec.gate = (name, chash, float(match["d"]))
        elif key == "missing" and value.strip() in {"zero", "none"}:
            spec.missing = value.strip()
        else:
            raise InputError(f"--combine {text!r}: unknown option {option.strip()!r} (gate=SCORER>=δ, missing=zero|none)")
    return spec


def _apply(arr: np.ndarray, name: str, arg: str | None) -> np.ndarray:
    if name == "clip":
        return transforms.clip(arr, float(arg) if arg else 0.0)
    if name == "delta":
        return transforms.delta(arr, arg or "keep")
    if name == "min":
        return transforms.minform(arr, how="min")
    if name == "softmin":
        return transforms.minform(arr, how="minform", temperature=float(arg) if arg else 0.1)
    if name == "logit":
        return logit(arr)
    if name == "lsig":
        return log_sigmoid(arr - (float(arg) if arg else 0.0))
    raise ValueError(name)


def apply_term(term: Term, values: np.ndarray) -> np.ndarray:
    out = np.asarray(values, dtype=float)
    for name, arg in term.transforms:
        out = _apply(out, name, arg)
    return term.weight * out


# ---------------------------------------------------------------- scores → per-turn table

@dataclass
class TrajectoryRewards:
    """One trajectory's combined rewards. `rewards` is None when they cannot be trusted
    (an infrastructure failure in a needed score): such a trajectory is left out, not scored 0."""

    trajectory_id: str
    num_turns: int
    terms: dict[str, list[float]]
    rewards: list[float] | None
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float | None:
        return None if self.rewards is None else float(sum(self.rewards))


def _is_infra(score: Score) -> bool:
    return score.value is None and (score.details or {}).get("failure") == "infrastructure"


def _select(scores: Iterable[Score], name: str, chash: str | None, spec_text: str) -> dict[str, list[Score]]:
    """Scores of one scorer by trajectory; refuse to mix several configurations silently."""
    chosen = [s for s in scores if s.scorer == name and (chash is None or s.config_hash == chash)]
    hashes = sorted({s.config_hash for s in chosen})
    if len(hashes) > 1:
        raise InputError(f"--combine {spec_text!r}: scorer {name!r} has scores from several configurations "
                         f"({', '.join(hashes)}); pick one as {name}@HASH")
    by_traj: dict[str, list[Score]] = defaultdict(list)
    for s in chosen:
        by_traj[s.trajectory_id].append(s)
    return by_traj


def _term_vector(rows: list[Score], num_turns: int, missing: str, notes: list[str], label: str
                 ) -> tuple[np.ndarray, bool, bool]:
    """(values, is_outcome, infra) for one term of one trajectory, before transforms."""
    if any(_is_infra(s) for s in rows):
        notes.append(f"{label}: infrastructure failure")
        return np.zeros(0), False, True
    outcome = [s for s in rows if s.level == ScoreLevel.TRAJECTORY]
    turns = {s.turn_index: s.value for s in rows if s.level == ScoreLevel.TURN}
    if outcome and not turns:
        value = outcome[0].value
        if value is None:
            notes.append(f"{label}: abstained")
            return np.full(1, 0.0 if missing == "zero" else math.nan), True, False
        return np.array([float(value)]), True, False
    vec = np.full(num_turns, math.nan)
    for index, value in turns.items():
        if index is not None and 0 <= index < num_turns and value is not None:
            vec[index] = float(value)
    gaps = int(np.isnan(vec).sum())
    if gaps:
        notes.append(f"{label}: {gaps} turn(s) without a score")
        if missing == "zero":
            vec = np.nan_to_num(vec, nan=0.0)
    return vec, False, False


def _gate_outcome(spec: Spec, scores: list[Score], traj_id: str, text: str) -> tuple[float | None, bool]:
    name, chash, _ = spec.gate
    rows = _select(scores, name, chash, text).get(traj_id, [])
    if any(_is_infra(s) for s in rows):
        return None, True
    values = [s.value for s in rows if s.level == ScoreLevel.TRAJECTORY and s.value is not None]
    return (values[0] if values else None), False


def combine_one(spec: Spec, trajectory: Trajectory, scores: list[Score], text: str = "") -> TrajectoryRewards:
    """Per-turn combined rewards of one trajectory from its stored scores."""
    n = len(trajectory.turns)
    result = TrajectoryRewards(trajectory.id, n, {}, None)
    total = np.zeros(n)
    broken = False
    gate_value, gate_infra = (None, False)
    if spec.gate:
        gate_value, gate_infra = _gate_outcome(spec, scores, trajectory.id, text)
        broken |= gate_infra
    for term in spec.terms:
        rows = _select(scores, term.scorer, term.config_hash, text).get(trajectory.id, [])
        raw, is_outcome, infra = _term_vector(rows, n, spec.missing, result.notes, term.label)
        if infra:
            broken = True
            continue
        if not rows:
            result.notes.append(f"{term.label}: no scores")
        if np.isnan(raw).any():
            broken = True
            continue
        shaped = apply_term(term, raw) if raw.size else raw
        vec = np.zeros(n)
        if is_outcome and n:
            vec[-1] = shaped[0]
        elif not is_outcome:
            vec = shaped if shaped.size == n else vec
            if spec.gate:
                vec = transforms.gate(vec, gate_value, spec.gate[2])
        result.terms[term.label] = [float(v) for v in vec]
        total += vec
    result.rewards = None if broken else [float(v) for v in total]
    return result


def combine_scores(spec: Spec | str, trajectories: Iterable[Trajectory], scores: Iterable[Score]
                   ) -> list[TrajectoryRewards]:
    text = spec if isinstance(spec, str) else ""
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    by_traj: dict[str, list[Score]] = defaultdict(list)
    for s in scores:
        by_traj[s.trajectory_id].append(s)
    return [combine_one(parsed, t, by_traj.get(t.id, []), text) for t in trajectories]
