"""The hybrid ranker: within-group standardisation, the pairwise fit, selection by training
best-of-N and cross-fitting — each against an independent slow computation, plus invariants."""

from __future__ import annotations

import itertools
import statistics

import numpy as np
import pytest

from agentrm.evaluation import hybrid, metrics


def brute_bon(scores, labels, n):
    total, subsets = 0.0, list(itertools.combinations(range(len(scores)), n))
    for sub in subsets:
        best = max(scores[i] for i in sub)
        tied = [labels[i] for i in sub if scores[i] == best]
        total += sum(tied) / len(tied)
    return total / len(subsets)


def brute_group_auc(scores, labels, gids):
    aucs = []
    for g in sorted(set(gids)):
        pos = [s for s, y, h in zip(scores, labels, gids, strict=True) if h == g and y]
        neg = [s for s, y, h in zip(scores, labels, gids, strict=True) if h == g and not y]
        if pos and neg:
            aucs.append(sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
                        / (len(pos) * len(neg)))
    return sum(aucs) / len(aucs) if aucs else None


def ref_fit(z, y, gids, l2):
    """The pairwise objective written pair by pair, minimised by scipy's BFGS."""
    optimize = pytest.importorskip("scipy.optimize")
    terms = []
    for g in sorted(set(gids)):
        pos = [i for i, h in enumerate(gids) if h == g and y[i]]
        neg = [i for i, h in enumerate(gids) if h == g and not y[i]]
        terms += [(i, j, 1.0 / (len(pos) * len(neg))) for i in pos for j in neg]
    if not terms:
        return np.zeros(z.shape[1])

    def loss(w):
        return sum(s * np.logaddexp(0.0, -(z[i] - z[j]) @ w) for i, j, s in terms) + l2 / 2 * w @ w

    return optimize.minimize(loss, np.zeros(z.shape[1]), method="BFGS", options={"gtol": 1e-10}).x


def ref_select(z, y, gids, names, l2, ns):
    """Leave-one-group-out for the combination, subset enumeration for best-of-N, the
    one-standard-error rule with the statistics module."""
    groups = sorted(set(gids))
    comb = np.zeros(len(y))
    for g in groups:
        train = [i for i, h in enumerate(gids) if h != g]
        w = ref_fit(z[train], y[train], [gids[i] for i in train], l2)
        for i, h in enumerate(gids):
            if h == g:
                comb[i] = z[i] @ w
    cands = {n: z[:, k] for k, n in enumerate(names)} | {"combination": comb}
    per_group, table = {}, {}
    for name, d in cands.items():
        per_group[name] = {}
        for g in groups:
            members = [i for i, h in enumerate(gids) if h == g]
            labels = [y[i] for i in members]
            if 0 < sum(labels) < len(labels):
                vals = [brute_bon([d[i] for i in members], labels, n) for n in ns if 2 <= n <= len(members)]
                per_group[name][g] = sum(vals) / len(vals)
        table[name] = (statistics.fmean(per_group[name].values()), brute_group_auc(list(d), list(y), gids))
    best = max(names, key=lambda k: (table[k][0], table[k][1], -names.index(k)))
    diff = [per_group["combination"][g] - per_group[best][g] for g in per_group[best]]
    if statistics.fmean(diff) > statistics.stdev(diff) / len(diff) ** 0.5:
        best = "combination"
    return best, table


def _data(rng, groups=5, size=4, d=2):
    gids = [f"g{g}" for g in range(groups) for _ in range(size)]
    x = rng.normal(size=(len(gids), d)) + rng.normal(size=(groups, d)).repeat(size, axis=0) * 3
    latent = x[:, 0] + 0.7 * x[:, 1] + rng.normal(size=len(gids))
    y = np.zeros(len(gids))
    for g in range(groups):  # at least one success and one failure per group
        idx = np.arange(g * size, (g + 1) * size)
        k = rng.integers(1, size)
        y[idx[np.argsort(-latent[idx])[:k]]] = 1.0
    return x, y, gids


def test_group_standardise_matches_statistics_module():
    rng = np.random.default_rng(0)
    x, _, gids = _data(rng)
    x[:4, 1] = 2.5  # a scorer constant in one group orders nothing there
    z = hybrid.group_standardise(x, gids)
    for g in sorted(set(gids)):
        idx = [i for i, h in enumerate(gids) if h == g]
        for k in range(x.shape[1]):
            col = [x[i, k] for i in idx]
            sd = statistics.pstdev(col)
            want = [0.0 if sd == 0 else (v - statistics.fmean(col)) / sd for v in col]
            assert z[idx, k] == pytest.approx(want)
    assert (z[:4, 1] == 0).all()


def test_group_auc_matches_pairwise_counting():
    rng = np.random.default_rng(1)
    for _ in range(20):
        s = rng.choice([0.0, 0.5, 1.0, 0.25], size=15)
        y = rng.integers(0, 2, size=15)
        gids = [f"g{i % 4}" for i in range(15)]
        want = brute_group_auc(list(s), list(y), gids)
        got = metrics.group_auc(s, y, gids)
        assert got == pytest.approx(want) if want is not None else got is None


def test_pairwise_fit_matches_scipy_optimum():
    rng = np.random.default_rng(2)
    x, y, gids = _data(rng, groups=6, size=5, d=3)
    z = hybrid.group_standardise(x, gids)
    for l2 in (0.3, 1.0):
        got = hybrid.fit_pairwise(z, y, gids, l2=l2).weights
        assert got == pytest.approx(ref_fit(z, y, gids, l2), abs=1e-5)


def test_pairwise_fit_without_mixed_groups_learns_nothing():
    z = np.array([[1.0], [-1.0], [0.5], [-0.5]])
    assert (hybrid.fit_pairwise(z, np.array([1, 1, 0, 0]), ["a", "a", "b", "b"]).weights == 0).all()


def test_selection_matches_brute_force():
    rng = np.random.default_rng(3)
    names = ["judge", "prm"]
    for trial in range(6):
        x, y, gids = _data(rng, groups=5, size=4)
        if trial % 2:
            x[:, 1] = rng.normal(size=len(y))  # make one scorer useless
        z = hybrid.group_standardise(x, gids)
        sel = hybrid.select(z, y, gids, names, l2=1.0, ns=[1, 2, 3, 4])
        best, table = ref_select(z, y, gids, names, 1.0, [1, 2, 3, 4])
        assert sel.chosen == best
        for name, (bon, auc) in table.items():
            assert sel.candidates[name]["best_of_n"] == pytest.approx(bon, abs=1e-9)
            assert sel.candidates[name]["group_auc"] == pytest.approx(auc, abs=1e-9)


def test_per_group_shifts_and_scales_do_not_change_the_hybrid():
    """The failure of a pooled fit on raw scores: a scorer whose level moves from task to task."""
    rng = np.random.default_rng(4)
    x, y, gids = _data(rng, groups=6, size=5)
    base, _ = hybrid.cross_fit(x, y, gids, ["a", "b"], folds=6)
    g = np.array([int(h[1:]) for h in gids])
    moved = x * (1 + g)[:, None] + (10 * g)[:, None]
    again, _ = hybrid.cross_fit(moved, y, gids, ["a", "b"], folds=6)
    assert again == pytest.approx(base)


def _bon(decision, y, gids, n=2):
    groups = [(decision[[h == g for h in gids]], y[[h == g for h in gids]]) for g in sorted(set(gids))]
    return metrics.best_of_n(groups, [n])[0]["accuracy"]


def test_a_perfect_scorer_is_kept_and_complementary_scorers_are_combined():
    rng = np.random.default_rng(5)
    gids = [f"g{g}" for g in range(20) for _ in range(6)]
    a, b = rng.normal(size=120), rng.normal(size=120)
    y = (a + b > 0).astype(float)
    perfect = np.column_stack([a + b, rng.normal(size=120)])  # one scorer is the truth
    decision, report = hybrid.cross_fit(perfect, y, gids, ["truth", "noise"], folds=5)
    assert [r["chosen"] for r in report] == ["truth"] * 5
    assert _bon(decision, y, gids) == pytest.approx(_bon(perfect[:, 0], y, gids))
    halves = np.column_stack([a, b])  # each scorer sees half of it: worth combining
    decision, report = hybrid.cross_fit(halves, y, gids, ["a", "b"], folds=5)
    assert [r["chosen"] for r in report] == ["combination"] * 5
    assert _bon(decision, y, gids) > max(_bon(a, y, gids), _bon(b, y, gids))


def test_a_small_edge_falls_back_to_the_best_single_scorer():
    """The combination is kept only when it beats the best single scorer by more than one
    standard error of the per-group differences."""
    names = ["judge", "prm"]
    z = np.zeros((12, 2))
    y = np.array([1, 0, 0, 0] * 3, dtype=float)
    gids = [f"g{i // 4}" for i in range(12)]
    z[:, 0] = [3, 2, 1, 0, 2, 3, 1, 0, 3, 2, 1, 0]  # judge ranks two of three groups right
    z[:, 1] = [0, 1, 2, 3] * 3  # prm ranks every group backwards
    sel = hybrid.select(z, y, gids, names, ns=[2, 3, 4])
    assert sel.chosen == "judge" and list(sel.weights) == [1.0, 0.0]
    edge = sel.candidates["combination"]
    assert edge["edge"] <= edge["edge_se"]


def test_cross_fit_scores_each_group_out_of_fold():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 2))
    y = (x[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(float)
    gids = [f"g{i // 4}" for i in range(40)]
    base, _ = hybrid.cross_fit(x, y, gids, ["a", "b"], folds=2, seed=0)
    fold = hybrid.fold_of(gids, 2, 0)
    in_fold0 = np.array([fold[g] == 0 for g in gids])
    flipped = y.copy()
    flipped[in_fold0] = 1 - flipped[in_fold0]  # fold 0's labels must not move its own scores
    again, _ = hybrid.cross_fit(x, flipped, gids, ["a", "b"], folds=2, seed=0)
    assert again[in_fold0] == pytest.approx(base[in_fold0])
    assert not np.allclose(again[~in_fold0], base[~in_fold0])
