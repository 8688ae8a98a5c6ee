"""Step scores → one trajectory score. Pure functions over plain floats (no numpy, no torch).

A PRM gives one score per step; what a trajectory is worth is a separate, configurable choice
(REWARD_MODELS.md §1). `None` entries are abstentions (a truncated or unscorable step): they are
dropped before aggregating, and an all-abstaining trajectory aggregates to `None`, never to 0.

    min      min_k r_k                    (a chain is as good as its worst step)
    last     r_K                          (ORM-like: the final step's verdict)
    mean     (1/K) Σ_k r_k
    product  Π_k r_k                      (probability that every step is correct, if independent)
    minform  Σ_k w_k r_k, w = softmax(−r/T)   PURE soft-min (ALGORITHMS.md §6, T = 0.1);
             T → 0 gives the hard min, T → ∞ the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

AGGREGATIONS = ("min", "last", "mean", "product", "minform")


def _valid(step_scores: Sequence[float | None]) -> list[float]:
    out = []
    for value in step_scores:
        if value is None:
            continue
        value = float(value)
        if math.isnan(value):
            raise ValueError("step score is NaN")
        out.append(value)
    return out


def softmin_weights(step_scores: Sequence[float], temperature: float = 0.1) -> list[float]:
    """w_k = softmax_k(−r_k / T) (PURE §6 step 2), computed stably (shift by the min)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    values = [float(v) for v in step_scores]
    if not values:
        return []
    low = min(values)
    if temperature == 0:  # the limit: all weight on the minimum (split evenly among ties)
        hits = [1.0 if v == low else 0.0 for v in values]
        return [h / sum(hits) for h in hits]
    exps = [math.exp(-(v - low) / temperature) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def minform_credit(step_scores: Sequence[float], temperature: float = 0.1) -> list[float]:
    """PURE's per-step credit r'_k = w_k · r_k; Σ_k r'_k ≈ min_k r_k."""
    weights = softmin_weights(step_scores, temperature)
    return [w * float(r) for w, r in zip(weights, step_scores, strict=False)]


def future_min(step_scores: Sequence[float]) -> list[float]:
    """V_t = min_{k≥t} r_k: min-form value of every step (ALGORITHMS.md §6, agentrm option)."""
    out: list[float] = []
    running = math.inf
    for value in reversed([float(v) for v in step_scores]):
        running = min(running, value)
        out.append(running)
    return out[::-1]


def aggregate(step_scores: Sequence[float | None], how: str = "min",
              temperature: float = 0.1) -> float | None:
    """One trajectory score from its step scores; None when no step has a score."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}: choose from {', '.join(AGGREGATIONS)}")
    values = _valid(step_scores)
    if not values:
        return None
    if how == "min":
        return min(values)
    if how == "last":
        return values[-1]
    if how == "mean":
        return sum(values) / len(values)
    if how == "product":
        return math.prod(values)
    return sum(minform_credit(values, temperature))
