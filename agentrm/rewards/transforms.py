"""Reward transforms: pure functions from one trajectory's per-turn rewards to shaped rewards.

Each bounds what a policy can gain by padding a trajectory with repeated "good" turns
(ALGORITHMS.md §6–§9, REWARD_MODELS.md §4): the undiscounted return (sum over turns) of the
transformed rewards never rises when a turn is duplicated (property-tested).

Input is a 1-D sequence of floats (one per turn, in order); output is a float numpy array of
the same length. NaN (a turn the scorer abstained on) is rejected: decide what a missing
score means before shaping (combine.py does).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DELTA_LAST = ("keep", "drop")


def _as_array(rewards: Sequence[float]) -> np.ndarray:
    arr = np.asarray(rewards, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"per-turn rewards must be 1-D, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError("per-turn rewards contain NaN (an abstained turn): fill or drop it first")
    return arr


def clip(rewards: Sequence[float], eta: float = 0.0) -> np.ndarray:
    """Clip (Gao et al., ALGORITHMS §7): r̃_k = min(r_k − η, 0).

    Every shaped reward is ≤ 0, so an extra turn can only lower the return.
    """
    return np.minimum(_as_array(rewards) - eta, 0.0)


def delta(rewards: Sequence[float], last: str = "keep") -> np.ndarray:
    """Delta (Gao et al., ALGORITHMS §7): r̃_k = r_k − r_{k+1} for k < K.

    Last-step convention (the paper leaves it open, we pick "keep" as the default):
      keep — r̃_K = r_K, so the return-to-go from turn t telescopes to r_t: each turn's
             return is the scorer's own judgement of that turn, bounded by the scorer's range.
      drop — r̃_K = 0 (the paper's figure), return-to-go from t is r_t − r_K.
    Either way the whole return depends only on the first (and last) turn, so duplicated turns
    cannot pump it. Telescoping is exact only for γ = 1.
    """
    if last not in DELTA_LAST:
        raise ValueError(f"delta last-step convention must be one of {DELTA_LAST}, got {last!r}")
    arr = _as_array(rewards)
    if arr.size == 0:
        return arr
    out = np.empty_like(arr)
    out[:-1] = arr[:-1] - arr[1:]
    out[-1] = arr[-1] if last == "keep" else 0.0
    return out


def minform(rewards: Sequence[float], how: str = "min", temperature: float = 0.1) -> np.ndarray:
    """Min-form credit (PURE, ALGORITHMS §6) written as per-turn rewards.

    V_t = aggregate(r_t..r_K) (hard min by default, `how="minform"` is PURE's soft-min with
    temperature T); the shaped reward r̃_t = V_t − V_{t+1} (V_{K+1} = 0) makes the
    return-to-go from t equal V_t, so the whole return is the (soft) minimum. The hard min is
    padding-proof; the soft-min is not exactly (duplicating a high step shifts its weights).
    """
    from agentrm.rewards.aggregate import aggregate

    arr = _as_array(rewards)
    values = np.array([float(aggregate(list(arr[t:]), how=how, temperature=temperature))
                       for t in range(arr.size)] + [0.0])
    return values[:-1] - values[1:]


def gate(turn_rewards: Sequence[float], outcome: float | None, threshold: float) -> np.ndarray:
    """G-RA gate (ALGORITHMS §8): turn rewards count only when the outcome reaches δ.

    R(τ) = r_high + 1[r_high ≥ δ]·Σ_t r_low,t — this returns the gated r_low part, placed per
    turn (dense); the caller adds the outcome itself. An unknown outcome (None: the verifier
    abstained or the infrastructure failed) closes the gate: unverified turns earn nothing.
    """
    arr = _as_array(turn_rewards)
    if outcome is None or not np.isfinite(outcome) or outcome < threshold:
        return np.zeros_like(arr)
    return arr


def returns_to_go(rewards: Sequence[float], gamma: float = 1.0) -> np.ndarray:
    """G_t = Σ_{k≥t} γ^{k−t} r_k (for checking the telescoping claims above)."""
    arr = _as_array(rewards)
    out = np.zeros_like(arr)
    running = 0.0
    for t in range(arr.size - 1, -1, -1):
        running = arr[t] + gamma * running
        out[t] = running
    return out
