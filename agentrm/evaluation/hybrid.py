"""Hybrid best-of-N: rank a group's candidates by a learned mix of scorers — or by the best
single scorer when the mix does not earn its place on the training groups.

Best-of-N only uses the order of candidates *within* a group, and tasks differ in scale and
difficulty (a judge may score every SWE trajectory lower than every arithmetic one), so a
pooled fit on raw scores learns between-task differences that do not transfer to a new task.
Everything here works within groups:

1. features: each scorer's value z-scored within its group (`group_standardise`);
2. the combination: pairwise logistic regression over within-group (success, failure) pairs,
   every group weighted equally, ridge penalty (`fit_pairwise`);
3. selection: the best single scorer on the training groups, unless the combination —
   measured by inner cross-fitting, so with held-out numbers — beats it by more than one
   standard error (`select`: stacking with a fallback);
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


def group_scores(decision: np.ndarray, y: np.ndarray, group_ids: Sequence[str],
                 ns: Sequence[int]) -> dict[str, float]:
    """Per group holding both outcomes (the others cannot tell rankers apart): its best-of-N
    averaged over the N ≥ 2 in `ns` that the group is large enough for."""
    out = {}
    for g, (s, yy) in zip(np.unique(np.asarray(group_ids)), _grouped(decision, y, group_ids), strict=True):
        values = [metrics.best_of_n_group(s, yy, n) for n in ns if 2 <= n <= len(s)]
        if 0 < (yy >= 0.5).sum() < len(yy) and values:
            out[str(g)] = float(np.mean(values))
    return out


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
    """The best single scorer (highest mean per-group best-of-N on the training groups; ties:
    higher within-group AUC, then the order given), replaced by the combination only when the
    combination's held-out per-group best-of-N beats it by more than one standard error of
    the paired per-group difference — with a handful of groups a smaller edge is noise, and
    falling back costs nothing (Breiman's one-standard-error rule)."""
    z = np.asarray(z, dtype=float)
    y = np.asarray(y, dtype=float)
    decisions: dict[str, np.ndarray] = {name: z[:, k] for k, name in enumerate(names)}
    inner = inner_decisions(z, y, group_ids, l2, seed)
    if inner is not None:
        decisions[COMBINATION] = inner
    per_group = {name: group_scores(d, y, group_ids, ns) for name, d in decisions.items()}
    table: dict[str, dict[str, float | None]] = {
        name: {"best_of_n": float(np.mean(list(v.values()))) if v else None,
               "group_auc": metrics.group_auc(decisions[name], y, group_ids)}
        for name, v in per_group.items()}

    def key(name: str) -> tuple[float, float, int]:
        bon, auc = table[name]["best_of_n"], table[name]["group_auc"]
        return (-np.inf if bon is None else bon, -np.inf if auc is None else auc, -list(names).index(name))

    chosen = max(names, key=key)
    weights = np.eye(z.shape[1])[list(names).index(chosen)]
    if COMBINATION in per_group:
        diff = np.array([per_group[COMBINATION][g] - per_group[chosen][g] for g in per_group[chosen]])
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) >= 2 else None  # JSON-safe
        table[COMBINATION] |= {"edge": float(diff.mean()) if len(diff) else None, "edge_se": se}
        if se is not None and diff.mean() > se:
            chosen, weights = COMBINATION, fit_pairwise(z, y, group_ids, l2).weights
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
        report.append({"held_out": sorted(str(g) for g in set(gids[test])), "chosen": sel.chosen,
                       "weights": {n: float(w) for n, w in zip(names, sel.weights, strict=True)},
                       "training": sel.candidates})
    return out, report
