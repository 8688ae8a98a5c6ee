"""Scorer-quality metrics as pure numpy functions (no store, no models).

Conventions (documented in docs/evaluation.md):
- ROC-AUC is the Mann-Whitney statistic: P(score of a positive > score of a negative), ties
  counting one half. Undefined (None) when the labels hold only one class.
- Within-group AUC is the mean, over groups holding both classes, of each group's ROC-AUC:
  what best-of-N sees (the order inside a group), not differences between groups.
- ECE uses `bins` equal-width bins on [0, 1] (default 10); bin i is [i/B, (i+1)/B), the last bin
  is closed. ECE = Σ_b |B_b|/n · |mean(y in b) − mean(p in b)|. Scores must be probabilities.
- Best-of-N per group is the exact expectation over all N-subsets of the group's candidates
  drawn without replacement, with ties at the top broken uniformly at random. Groups with fewer
  than N candidates do not contribute to N (the count of contributing groups is reported).
- First-error F1 is ProcessBench's: acc_err on samples with an error, acc_cor on all-correct
  samples, F1 = 2·acc_err·acc_cor / (acc_err + acc_cor).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import numpy as np


def _arrays(scores: Sequence[float], labels: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=float)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must be 1-D and the same length")
    if np.isnan(s).any() or np.isnan(y).any():
        raise ValueError("scores and labels must not contain NaN: drop abstentions first")
    return s, y


def roc_auc(scores: Sequence[float], labels: Sequence[float]) -> float | None:
    """Mann-Whitney AUC via average ranks (O(n log n)); labels are 0/1 (or ≥ 0.5 = positive)."""
    s, y = _arrays(scores, labels)
    pos = y >= 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average rank over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def group_auc(scores: Sequence[float], labels: Sequence[float], group_ids: Sequence[str]) -> float | None:
    """Mean over groups with both classes of the group's ROC-AUC (each group counts once);
    None when no group has both."""
    s, y = _arrays(scores, labels)
    gids = np.asarray(group_ids)
    if gids.shape != s.shape:
        raise ValueError(f"group ids {gids.shape} and scores {s.shape} must be the same length")
    per_group = [roc_auc(s[gids == g], y[gids == g]) for g in np.unique(gids)]
    kept = [a for a in per_group if a is not None]
    return float(np.mean(kept)) if kept else None


def reliability(probs: Sequence[float], labels: Sequence[float], bins: int = 10) -> list[dict]:
    """Per bin: edges, count, mean predicted probability, observed positive rate (None if empty)."""
    p, y = _arrays(probs, labels)
    if bins < 1:
        raise ValueError("bins must be at least 1")
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError("calibration needs probabilities in [0, 1]")
    idx = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = idx == b
        n = int(mask.sum())
        out.append({"low": b / bins, "high": (b + 1) / bins, "count": n,
                    "confidence": float(p[mask].mean()) if n else None,
                    "accuracy": float((y[mask] >= 0.5).mean()) if n else None})
    return out


def ece(probs: Sequence[float], labels: Sequence[float], bins: int = 10) -> float | None:
    """Expected calibration error over equal-width bins (module docstring); None for no data."""
    table = reliability(probs, labels, bins)
    n = sum(b["count"] for b in table)
    if n == 0:
        return None
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in table if b["count"]))


def best_of_n_group(scores: Sequence[float], labels: Sequence[float], n: int) -> float | None:
    """Expected label of the top-scored candidate among a uniformly random n-subset.

    Sort candidates by score (descending) into tie blocks. The subset's maximum falls in the
    block spanning sorted positions [a, a+m) with probability (C(G−a, n) − C(G−a−m, n)) / C(G, n);
    given that, each block member is equally likely to be picked, so the expected label is the
    block's mean label. None when the group has fewer than n candidates.
    """
    s, y = _arrays(scores, labels)
    size = len(s)
    if n < 1:
        raise ValueError("n must be at least 1")
    if size < n:
        return None
    values = np.unique(s)[::-1]
    total, a, denom = 0.0, 0, comb(size, n)
    for v in values:
        block = s == v
        m = int(block.sum())
        prob = (comb(size - a, n) - comb(size - a - m, n)) / denom
        total += prob * float(y[block].mean())
        a += m
    return total


def oracle_at_n(labels: Sequence[float], n: int) -> float | None:
    """pass@n: probability that a random n-subset holds at least one positive (a perfect ranker)."""
    y = np.asarray(labels, dtype=float) >= 0.5
    size, c = len(y), int(y.sum())
    if n < 1:
        raise ValueError("n must be at least 1")
    if size < n:
        return None
    return 1.0 - comb(size - c, n) / comb(size, n)


def best_of_n(groups: Sequence[tuple[Sequence[float], Sequence[float]]], ns: Sequence[int]) -> list[dict]:
    """Mean over groups of best_of_n_group and oracle_at_n for each n; `groups` = (scores, labels)."""
    out = []
    for n in ns:
        picked = [best_of_n_group(s, y, n) for s, y in groups]
        oracle = [oracle_at_n(y, n) for _, y in groups]
        kept = [(p, o) for p, o in zip(picked, oracle, strict=True) if p is not None]
        out.append({"n": int(n), "groups": len(kept),
                    "accuracy": float(np.mean([p for p, _ in kept])) if kept else None,
                    "oracle": float(np.mean([o for _, o in kept])) if kept else None})
    return out


def first_error(step_scores: Sequence[float | None], threshold: float = 0.5) -> int:
    """Predicted index of the first wrong step: the first score below `threshold`, −1 if none.
    Abstained steps (None) are skipped, never counted as wrong."""
    for k, v in enumerate(step_scores):
        if v is not None and v < threshold:
            return k
    return -1


def first_error_f1(predicted: Sequence[int], gold: Sequence[int]) -> dict:
    """ProcessBench: acc_err (exact first-error index on erroneous samples), acc_cor (−1 predicted
    on correct samples) and their harmonic mean. Parts are None when that class is empty."""
    if len(predicted) != len(gold):
        raise ValueError("predicted and gold must have the same length")
    err = [p == g for p, g in zip(predicted, gold, strict=True) if g != -1]
    cor = [p == -1 for p, g in zip(predicted, gold, strict=True) if g == -1]
    acc_err = float(np.mean(err)) if err else None
    acc_cor = float(np.mean(cor)) if cor else None
    f1 = None
    if acc_err is not None and acc_cor is not None:
        f1 = 0.0 if acc_err + acc_cor == 0 else 2 * acc_err * acc_cor / (acc_err + acc_cor)
    return {"acc_err": acc_err, "acc_cor": acc_cor, "f1": f1, "erroneous": len(err), "correct": len(cor)}
