"""Hybrid best-of-N: rank a group's candidates by a learned mix of several scorers.

Weights come from L2-regularised logistic regression of the verified label on the scorers'
trajectory scores (standardised on the training split), fitted with IRLS in numpy — no
scikit-learn needed. `cross_fit` gives every group out-of-fold predictions: the weights that
rank a group were never fitted on it, so the reported best-of-N is a held-out number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Logistic:
    """p(y=1 | x) = σ(b + Σ_j w_j (x_j − μ_j)/σ_j)."""

    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray

    def decision(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=float) - self.mean) / self.scale @ self.weights + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision(x)))

    def raw_weights(self) -> tuple[np.ndarray, float]:
        """The same model on unstandardised features: w/σ and b − Σ w μ/σ."""
        w = self.weights / self.scale
        return w, float(self.bias - w @ self.mean)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 100,
                 tol: float = 1e-10) -> Logistic:
    """Minimise Σ_i log(1 + e^{−ỹ_i z_i}) + (l2/2)·|w|² (bias unpenalised) by Newton/IRLS.

    The penalty keeps the optimum finite when a scorer separates the labels perfectly (a hard
    verifier often does)."""
    x = np.asarray(x, dtype=float)
    y = (np.asarray(y, dtype=float) >= 0.5).astype(float)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x must be (n, d) and y (n,), got {x.shape} and {y.shape}")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.hstack([np.ones((x.shape[0], 1)), (x - mean) / scale])
    beta = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(z @ beta)))
        grad = z.T @ (p - y) + penalty * beta
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-12 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < tol:
            break
    return Logistic(beta[1:], float(beta[0]), mean, scale)


def fold_of(group_ids: Sequence[str], folds: int, seed: int = 0) -> dict[str, int]:
    """Assign whole groups to folds (shuffled with `seed`, then round-robin)."""
    unique = sorted(set(group_ids))
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[i]: k % folds for k, i in enumerate(order)}


def cross_fit(x: np.ndarray, y: np.ndarray, group_ids: Sequence[str], folds: int = 2,
              l2: float = 1.0, seed: int = 0) -> tuple[np.ndarray, list[Logistic]]:
    """Out-of-fold hybrid scores: each group is scored by a model fitted on the other folds.

    Folds whose training part has a single class fall back to the equal-weight mean of the
    standardised features (no label information is used)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    assign = fold_of(group_ids, folds, seed)
    fold = np.array([assign[g] for g in group_ids])
    out = np.full(len(y), np.nan)
    models = []
    for k in range(folds):
        test, train = fold == k, fold != k
        if not test.any():
            continue
        ytr = y[train] >= 0.5
        if train.sum() == 0 or ytr.all() or not ytr.any():
            mean = x[train].mean(axis=0) if train.any() else x.mean(axis=0)
            model = Logistic(np.ones(x.shape[1]) / x.shape[1], 0.0, mean, np.ones(x.shape[1]))
        else:
            model = fit_logistic(x[train], y[train], l2=l2)
        out[test] = model.decision(x[test])
        models.append(model)
    return out, models
