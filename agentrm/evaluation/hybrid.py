"""Hybrid best-of-N: rank a group's candidates by a learned mix of scorers — or by the best
single scorer when the mix does not earn its place on the training groups.

Best-of-N only uses the order of candidates *within* a group, and tasks differ in scale and
difficulty (a judge may score every SWE trajectory lower than every arithmetic one), so a
pooled fit on raw scores learns between-task differences that do not transfer to a new task.
Everything here works within groups:

1. features: each scorer's value z-scored within its group (`group_standardise`);
2. the combination: pairwise logistic regression over within-group (success, failure) pairs,
   every group weighted equally, ridge penalty (`fit_pairwise`);
3. selection: every single scorer and the combination are candidates; the one with the best
   best-of-N on the training groups wins — the combination's measured by inner cross-fitting,
   so it competes with held-out numbers (`select`, a discrete super learner);
4. `cross_fit`: steps 2–3 per outer fold, so a group is ranked by a choice made without its
   labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentrm.evaluation import metrics

COMBINATION = "combination"
INNER_FOLDS = 10  # leave-one-group-out up to this many training groups


def group_standardise(x: np.ndarray, group_ids: Sequence[str]) -> np.ndarray:
    """Each column z-scored within each group: (x − group mean) / group population std.
    A column constant in a group (or a group of one) gives 0 there: it cannot order it."""
    x = np.asarray(x, dtype=float)
    gids = np.asarray(group_ids)
    out = np.zeros_like(x)
    for g in np.unique(gids):
        idx = gids == g
        block = x[idx]
        centred = block - block.mean(axis=0)
        sd = block.std(axis=0)
        flat = sd <= 1e-12 * np.maximum(1.0, np.abs(block).max(axis=0))
        out[idx] = np.where(flat, 0.0, centred / np.where(flat, 1.0, sd))
    return out


def within_group_pairs(y: np.ndarray, group_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positive index, negative index, weight) of every within-group (success, failure) pair;
    a group's pairs share weight 1, so each group counts once however many pairs it has."""
    y = np.asarray(y, dtype=float) >= 0.5
    gids = np.asarray(group_ids)
    pos_idx, neg_idx, weight = [], [], []
    for g in np.unique(gids):
        members = np.flatnonzero(gids == g)
        pos, neg = members[y[members]], members[~y[members]]
        if len(pos) and len(neg):
            pi, ni = np.meshgrid(pos, neg, indexing="ij")
            pos_idx.append(pi.ravel())
            neg_idx.append(ni.ravel())
            weight.append(np.full(pi.size, 1.0 / pi.size))
    if not pos_idx:
        empty = np.zeros(0, dtype=int)
        return empty, empty, np.zeros(0)
    return np.concatenate(pos_idx), np.concatenate(neg_idx), np.concatenate(weight)


@dataclass
class Pairwise:
    """Rank by w·z: P(i above j) = σ(w·(z_i − z_j)) (Bradley–Terry / RankNet)."""

    weights: np.ndarray

    def decision(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=float) @ self.weights


def fit_pairwise(z: np.ndarray, y: np.ndarray, group_ids: Sequence[str], l2: float = 1.0,
                 iters: int = 100, tol: float = 1e-10) -> Pairwise:
    """Minimise Σ_pairs s_p·log(1 + e^{−w·(z_i − z_j)}) + (l2/2)·|w|² by Newton's method
    (s_p = 1/#pairs of its group). No intercept: it cancels within a group. Without any
    within-group pair (no group holds both outcomes) there is nothing to learn: w = 0."""
    z = np.asarray(z, dtype=float)
    if z.ndim != 2 or z.shape[0] != len(y) or len(y) != len(group_ids):
        raise ValueError(f"z must be (n, d) with n labels and group ids, got {z.shape}, {len(y)}, {len(group_ids)}")
    pos, neg, s = within_group_pairs(y, group_ids)
    w = np.zeros(z.shape[1])
    if not len(s):
        return Pairwise(w)
    d = z[pos] - z[neg]
    ridge = (l2 + 1e-9) * np.eye(len(w))  # a hair of ridge keeps l2 = 0 solvable
    for _ in range(iters):
        m = d @ w
        p_wrong = 1.0 / (1.0 + np.exp(m))  # σ(−m): the pair's chance of being misordered
        grad = -(d.T @ (s * p_wrong)) + (l2 + 1e-9) * w
        hess = (d * (s * p_wrong * (1.0 - p_wrong))[:, None]).T @ d + ridge
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < tol:
            break
    return Pairwise(w)


def selection_score(decision: np.ndarray, y: np.ndarray, group_ids: Sequence[str],
                    ns: Sequence[int]) -> tuple[float | None, float | None]:
    """(mean best-of-N over the N ≥ 2 in `ns` that some group is large enough for, mean
    within-group AUC): how a candidate is judged on training groups."""
    groups = _grouped(decision, y, group_ids)
    rows = metrics.best_of_n(groups, [n for n in ns if n >= 2])
    kept = [r["accuracy"] for r in rows if r["accuracy"] is not None]
    bon = float(np.mean(kept)) if kept else None
    return bon, metrics.group_auc(decision, y, group_ids)


def _grouped(s: np.ndarray, y: np.ndarray, group_ids: Sequence[str]) -> list:
    gids = np.asarray(group_ids)
    return [(np.asarray(s)[gids == g], np.asarray(y)[gids == g]) for g in np.unique(gids)]


@dataclass
class Selection:
    """What one fold's training groups chose: a scorer's name or COMBINATION, the weights on
    the within-group z-scores (a one-hot vector for a single scorer) and every candidate's
    (best-of-N, within-group AUC) on the training groups."""

    chosen: str
    weights: np.ndarray
    candidates: dict[str, dict[str, float | None]] = field(default_factory=dict)


def inner_decisions(z: np.ndarray, y: np.ndarray, group_ids: Sequence[str], l2: float,
                    seed: int = 0) -> np.ndarray | None:
    """The combination's held-out decisions on the training groups: leave one group out (up to
    INNER_FOLDS folds of whole groups beyond that). None with fewer than two groups."""
    unique = sorted(set(group_ids))
    k = min(len(unique), INNER_FOLDS)
    if k < 2:
        return None
    assign = fold_of(group_ids, k, seed)
    fold = np.array([assign[g] for g in group_ids])
    gids = np.asarray(group_ids)
    out = np.zeros(len(y))
    for f in range(k):
        train = fold != f
        out[~train] = fit_pairwise(z[train], y[train], list(gids[train]), l2).decision(z[~train])
    return out


def select(z: np.ndarray, y: np.ndarray, group_ids: Sequence[str], names: Sequence[str],
           l2: float = 1.0, ns: Sequence[int] = (2, 3, 4), seed: int = 0) -> Selection:
    """Pick the candidate with the highest training best-of-N; ties go to the higher
    within-group AUC, then to a single scorer (in the order given) over the combination."""
    z = np.asarray(z, dtype=float)
    y = np.asarray(y, dtype=float)
    decisions: dict[str, np.ndarray] = {name: z[:, k] for k, name in enumerate(names)}
    inner = inner_decisions(z, y, group_ids, l2, seed)
    if inner is not None:
        decisions[COMBINATION] = inner
    table = {name: dict(zip(("best_of_n", "group_auc"), selection_score(d, y, group_ids, ns), strict=True))
             for name, d in decisions.items()}
    order = list(decisions)

    def key(name: str) -> tuple[float, float, int, int]:
        bon, auc = table[name]["best_of_n"], table[name]["group_auc"]
        return (-np.inf if bon is None else bon, -np.inf if auc is None else auc,
                int(name != COMBINATION), -order.index(name))

    chosen = max(order, key=key)
    if chosen == COMBINATION:
        weights = fit_pairwise(z, y, group_ids, l2).weights
    else:
        weights = np.eye(z.shape[1])[order.index(chosen)]
    return Selection(chosen, weights, table)


def fold_of(group_ids: Sequence[str], folds: int, seed: int = 0) -> dict[str, int]:
    """Assign whole groups to folds (shuffled with `seed`, then round-robin)."""
    unique = sorted(set(group_ids))
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[i]: k % folds for k, i in enumerate(order)}


def cross_fit(x: np.ndarray, y: np.ndarray, group_ids: Sequence[str], names: Sequence[str],
              folds: int = 2, l2: float = 1.0, ns: Sequence[int] = (2, 3, 4), seed: int = 0
              ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Out-of-fold hybrid decisions (w·z, z = within-group z-scores of the raw values `x`):
    every group is ranked by a selection made on the other folds' groups only."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    z = group_standardise(x, group_ids)
    gids = np.asarray(group_ids)
    assign = fold_of(group_ids, folds, seed)
    fold = np.array([assign[g] for g in group_ids])
    out = np.full(len(y), np.nan)
    report = []
    for k in range(folds):
        test, train = fold == k, fold != k
        if not test.any():
            continue
        sel = select(z[train], y[train], list(gids[train]), names, l2, ns, seed)
        out[test] = z[test] @ sel.weights
        report.append({"held_out": sorted(set(gids[test])), "chosen": sel.chosen,
                       "weights": {n: float(w) for n, w in zip(names, sel.weights, strict=True)},
                       "training": sel.candidates})
    return out, report
