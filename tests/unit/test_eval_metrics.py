"""Scorer-quality metrics: hand-computed tiny cases and independent brute-force references."""

from __future__ import annotations

import itertools
import random
from math import comb

import numpy as np
import pytest

from agentrm.evaluation import metrics


def brute_auc(scores, labels):
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def brute_bon(scores, labels, n):
    """Enumerate every n-subset; within it, the top score wins, ties split evenly."""
    total = 0.0
    subsets = list(itertools.combinations(range(len(scores)), n))
    for sub in subsets:
        best = max(scores[i] for i in sub)
        tied = [labels[i] for i in sub if scores[i] == best]
        total += sum(tied) / len(tied)
    return total / len(subsets)


def test_auc_hand_computed():
    assert metrics.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert metrics.roc_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert metrics.roc_auc([1, 2, 3], [0, 1, 1]) == pytest.approx(1.0)
    assert metrics.roc_auc([1, 2, 3], [1, 1, 1]) is None


def test_auc_matches_pairwise_on_random_inputs():
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(2, 30)
        scores = [rng.choice([0.0, 0.25, 0.5, 1.0, rng.random()]) for _ in range(n)]
        labels = [rng.randint(0, 1) for _ in range(n)]
        if len(set(labels)) < 2:
            continue
        assert metrics.roc_auc(scores, labels) == pytest.approx(brute_auc(scores, labels))


def test_auc_matches_sklearn_when_installed():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    s, y = rng.random(40), rng.integers(0, 2, 40)
    assert metrics.roc_auc(s, y) == pytest.approx(sk.roc_auc_score(y, s))


def test_ece_hand_computed():
    # bins of width 0.1: |0−.05|, |1−.15|, |1−.85|, |1−.95| → mean 0.275
    assert metrics.ece([0.05, 0.15, 0.95, 0.85], [0, 1, 1, 1]) == pytest.approx(0.275)
    # a perfectly calibrated bin: p = 0.5 twice, one positive
    assert metrics.ece([0.5, 0.5], [0, 1]) == pytest.approx(0.0)
    table = metrics.reliability([1.0, 0.0], [1, 0], bins=4)
    assert table[-1]["count"] == 1 and table[0]["count"] == 1  # 1.0 lands in the closed last bin
    with pytest.raises(ValueError):
        metrics.ece([1.5], [1])


def test_ece_matches_loop_reference():
    rng = np.random.default_rng(2)
    p, y = rng.random(200), rng.integers(0, 2, 200)
    ref = 0.0
    for b in range(10):
        mask = (p >= b / 10) & ((p < (b + 1) / 10) if b < 9 else (p <= 1.0))
        if mask.any():
            ref += mask.sum() / 200 * abs(y[mask].mean() - p[mask].mean())
    assert metrics.ece(p, y) == pytest.approx(ref)


def test_best_of_n_hand_computed():
    s, y = [3, 2, 1], [0, 1, 1]
    assert metrics.best_of_n_group(s, y, 1) == pytest.approx(2 / 3)
    assert metrics.best_of_n_group(s, y, 2) == pytest.approx(1 / 3)  # {a,b}→0 {a,c}→0 {b,c}→1
    assert metrics.best_of_n_group(s, y, 3) == pytest.approx(0.0)
    assert metrics.best_of_n_group(s, y, 4) is None  # the group is smaller than N: skipped
    assert metrics.oracle_at_n(y, 2) == pytest.approx(1.0)
    assert metrics.oracle_at_n([1, 0, 0, 0], 2) == pytest.approx(1 - comb(3, 2) / comb(4, 2))
    # ties at the top are split: {a,b}→.5 {a,c}→1 {b,c}→0
    assert metrics.best_of_n_group([1, 1, 0], [1, 0, 1], 2) == pytest.approx(0.5)


def test_best_of_n_matches_subset_enumeration():
    rng = random.Random(3)
    for _ in range(60):
        size = rng.randint(1, 8)
        scores = [rng.choice([0.0, 0.5, 1.0, rng.random()]) for _ in range(size)]
        labels = [rng.randint(0, 1) for _ in range(size)]
        for n in range(1, size + 1):
            assert metrics.best_of_n_group(scores, labels, n) == pytest.approx(brute_bon(scores, labels, n))


def test_best_of_n_over_groups_reports_counts():
    groups = [([3, 2, 1], [0, 1, 1]), ([1, 0], [1, 0])]
    rows = metrics.best_of_n(groups, [1, 2, 3])
    assert rows[0] == {"n": 1, "groups": 2, "accuracy": pytest.approx((2 / 3 + 0.5) / 2),
                       "oracle": pytest.approx((2 / 3 + 0.5) / 2)}
    assert rows[1]["groups"] == 2 and rows[1]["accuracy"] == pytest.approx((1 / 3 + 1) / 2)
    assert rows[2]["groups"] == 1 and rows[2]["accuracy"] == pytest.approx(0.0)
    assert rows[2]["oracle"] == pytest.approx(1.0)


def test_first_error_and_processbench_f1():
    assert metrics.first_error([0.9, 0.7, 0.2, 0.1]) == 2
    assert metrics.first_error([0.9, None, 0.6]) == -1  # abstentions are not errors
    assert metrics.first_error([0.9, 0.7], threshold=0.8) == 1
    got = metrics.first_error_f1([-1, 1, 2, 1], [-1, -1, 2, 0])
    assert got["acc_cor"] == pytest.approx(0.5) and got["acc_err"] == pytest.approx(0.5)
    assert got["f1"] == pytest.approx(0.5)
    got = metrics.first_error_f1([-1, 3, 3], [-1, 3, 1])  # acc_cor 1, acc_err 1/2 → F1 2/3
    assert got["f1"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert metrics.first_error_f1([-1], [-1])["f1"] is None
