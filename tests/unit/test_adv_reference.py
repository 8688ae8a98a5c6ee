"""An independent, deliberately plain re-implementation of ALGORITHMS.md §1–§4, §6 for tests.

Python loops per group and per trajectory, dicts and the statistics module; shares no code with
agentrm.advantages (only the documented conventions). Rows are dicts like the JSONL step rows.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from difflib import SequenceMatcher


def _std(values, kind, eps_var):
    if kind == "sample":
        var = statistics.variance(values) if len(values) > 1 else math.nan
    else:
        var = statistics.pvariance(values)
    return math.sqrt(var + eps_var)


def _trajectories(rows):
    """{uid: {traj_uid: [row indices sorted by step]}} (dicts keep first-seen order)."""
    groups = defaultdict(lambda: defaultdict(list))
    for i, r in enumerate(rows):
        groups[r["uid"]][r["traj_uid"]].append(i)
    for trajs in groups.values():
        for idx in trajs.values():
            idx.sort(key=lambda i: rows[i]["step"])
    return groups


def _scores_returns(rows, c):
    n = len(rows)
    score, ret = [0.0] * n, [0.0] * n
    for trajs in _trajectories(rows).values():
        for idx in trajs.values():
            pen = [c["invalid_penalty"] if not rows[i].get("valid", True) else 0.0 for i in idx]
            r = [rows[i]["reward"] for i in idx]
            if c["penalty_placement"] == "reward":
                r = [a - p for a, p in zip(r, pen, strict=True)]
                pen = [0.0] * len(idx)
            total = sum(r)
            g = 0.0
            for k in reversed(range(len(idx))):
                g = r[k] + c["gamma"] * g
                ret[idx[k]] = g - pen[k]
                score[idx[k]] = total - pen[k]
    return score, ret


def _episode(rows, score, c, loo=False):
    out = [0.0] * len(rows)
    for trajs in _trajectories(rows).values():
        if c["baseline"] == "step":
            entries = {i: score[i] for idx in trajs.values() for i in idx}
            own = dict(entries)
        else:
            entries = {t: sum(score[i] for i in idx) / len(idx) for t, idx in trajs.items()}
            own = {i: entries[t] for t, idx in trajs.items() for i in idx}
        values = list(entries.values())
        n = len(values)
        for idx in trajs.values():
            for i in idx:
                if n == 1:
                    mu, sd = 0.0, 1.0
                else:
                    mu = (sum(values) - own[i]) / (n - 1) if loo else sum(values) / n
                    sd = _std(values, c["std"], c["eps_var"])
                a = score[i] - mu
                out[i] = a / (sd + c["eps"]) if c["norm"] == "mean_std" else a
    return out


def _clusters(rows, c):
    """{row: cluster key}; similarity is greedy over rows in (uid, traj_uid, step) order."""
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["uid"], str(rows[i]["traj_uid"]), rows[i]["step"]))
    key = {}
    if c["anchor"] == "exact":
        for i in order:
            a = rows[i].get("anchor")
            key[i] = ("row", i) if a is None else (rows[i]["uid"], repr(a) if not isinstance(a, str) else a)
        return key
    thresh = float(c["anchor"].split(":")[1])
    reps = defaultdict(list)  # uid -> [(text, id)]
    for i in order:
        a, uid = rows[i].get("anchor"), rows[i]["uid"]
        if not isinstance(a, str):
            key[i] = ("row", i) if a is None else (uid, repr(a))
            continue
        for text, cid in reps[uid]:
            if SequenceMatcher(None, a, text).ratio() >= thresh:
                key[i] = cid
                break
        else:
            cid = (uid, "cluster", len(reps[uid]))
            reps[uid].append((a, cid))
            key[i] = cid
    return key


def gigpo(rows, c):
    score, ret = _scores_returns(rows, c)
    a_e = _episode(rows, score, c)
    members = defaultdict(list)
    for i, k in _clusters(rows, c).items():
        members[k].append(i)
    a_s = [0.0] * len(rows)
    for idx in members.values():
        if len(idx) == 1:
            continue
        vals = [ret[i] for i in idx]
        mu, sd = sum(vals) / len(vals), _std(vals, c["std"], c["eps_var"])
        for i in idx:
            a = ret[i] - mu
            a_s[i] = a / (sd + c["eps"]) if c["norm"] == "mean_std" else a
    return [e + c["omega"] * s for e, s in zip(a_e, a_s, strict=True)], a_e, a_s


def grpo(rows, c):
    score, _ = _scores_returns(rows, c)
    return _episode(rows, score, c)


def rloo(rows, c):
    score, _ = _scores_returns(rows, c)
    return _episode(rows, score, c, loo=True)


def _igpo_stats(values, c):
    if not values:
        return 0.0, 1.0
    mu = sum(values) / len(values)
    if len(values) <= 1:
        return mu, 1.0
    return mu, _std(values, c["std"], c["eps_var"])


def igpo(rows, c):
    out = [0.0] * len(rows)
    for trajs in _trajectories(rows).values():
        outcome = {t: sum(rows[i]["reward"] for i in idx) for t, idx in trajs.items()}
        ig = {}
        for idx in trajs.values():
            vals = [rows[i].get("turn_reward") for i in idx[:-1]]
            if all(v is not None and math.isfinite(v) for v in vals):
                ig.update({i: v for i, v in zip(idx[:-1], vals, strict=True)})
        f1_vals, ig_vals = list(outcome.values()), list(ig.values())
        if c["igpo_norm"] == "joint":
            stats_o = stats_i = _igpo_stats(f1_vals + ig_vals, c)
        else:
            stats_o, stats_i = _igpo_stats(f1_vals, c), _igpo_stats(ig_vals, c)

        def z(v, st):
            return (v - st[0]) / (st[1] + c["eps"]) if c["norm"] == "mean_std" else v - st[0]

        for t, idx in trajs.items():
            zs = [z(ig[i], stats_i) if i in ig else 0.0 for i in idx[:-1]] + [z(outcome[t], stats_o)]
            carry = 0.0  # A of the next boundary
            for k in reversed(range(len(idx))):
                if zs[k] != 0.0:
                    carry = zs[k] + c["gamma"] * carry
                out[idx[k]] = carry
    return out


def _softmin(values, temperature):
    if temperature == 0:
        return min(values)
    m = min(values)
    w = [math.exp(-(v - m) / temperature) for v in values]
    return sum(a * b for a, b in zip(w, values, strict=True)) / sum(w)


def minform(rows, c):
    out = [0.0] * len(rows)
    for trajs in _trajectories(rows).values():
        v = {}
        v0 = {}
        for t, idx in trajs.items():
            r = [rows[i]["turn_reward"] if rows[i].get("turn_reward") is not None
                 and math.isfinite(rows[i]["turn_reward"]) else rows[i]["reward"] for i in idx]
            for k, i in enumerate(idx):
                v[i] = _softmin(r[k:], c["minform_temperature"])
            v0[t] = _softmin(r, c["minform_temperature"])
            if c["minform_scope"] == "all":
                for i in idx:
                    v[i] = v0[t]
        n = len(v0)
        sd = _std(list(v0.values()), c["std"], c["eps_var"]) if n > 1 else 1.0
        for t, idx in trajs.items():
            base = (sum(v0.values()) - v0[t]) / (n - 1) if n > 1 else 0.0
            for i in idx:
                a = v[i] - base
                out[i] = a / (sd + c["eps"]) if c["norm"] == "mean_std" else a
    return out


# ---------------------------------------------------------------- vectorised == reference

import random  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from agentrm.advantages import AdvantageConfig, compute, rows_from_records  # noqa: E402

WORDS = ["ls", "cat a.py", "pytest", "edit", "grep foo", "cd src"]


def random_rows(seed: int, text_anchors: bool = False) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for g in range(rng.randint(1, 6)):
        for t in range(rng.randint(1, 5)):
            step = rng.randint(0, 2)
            for _ in range(rng.randint(1, 6)):
                step += rng.choice([1, 2])  # gaps in step numbers are allowed
                if text_anchors:
                    anchor = " ".join(rng.choice(WORDS) for _ in range(3))
                else:
                    anchor = rng.choice(["s0", "s1", "s2", "s3", None, 7, ["a", 1]])
                rows.append({
                    "uid": f"g{g}", "traj_uid": f"g{g}-t{t}", "step": step,
                    "anchor": anchor,
                    "reward": rng.choice([0.0, 0.0, 1.0, 0.5, round(rng.uniform(-1, 1), 3)]),
                    "valid": rng.random() > 0.2,
                    "turn_reward": rng.choice([None, round(rng.uniform(-1, 1), 3), 0.0, 0.3]),
                })
    rng.shuffle(rows)
    return rows


def run(rows, **kw):
    pairs = [(r, ("mem", i + 1)) for i, r in enumerate(rows)]
    cfg = AdvantageConfig(**kw)
    return compute(rows_from_records(pairs), cfg), cfg.metadata()


CONFIGS = [
    dict(estimator="gigpo"),
    dict(estimator="gigpo", norm="mean_std", gamma=0.9, baseline="step"),
    dict(estimator="gigpo", norm="mean_std", std="population", eps_var=1e-8, penalty_placement="reward"),
    dict(estimator="gigpo", gamma=0.5, omega=0.7, invalid_penalty=0.3),
    dict(estimator="grpo"),
    dict(estimator="grpo", norm="mean", baseline="step"),
    dict(estimator="grpo", std="population", penalty_placement="reward"),
    dict(estimator="rloo"),
    dict(estimator="rloo", baseline="step"),
    dict(estimator="rloo", norm="mean_std"),
    dict(estimator="igpo"),
    dict(estimator="igpo", igpo_norm="joint", gamma=0.8),
    dict(estimator="igpo", norm="mean", gamma=0.5, std="sample", eps_var=0.0),
    dict(estimator="minform"),
    dict(estimator="minform", minform_temperature=0.0, norm="mean_std"),
    dict(estimator="minform", minform_scope="all", minform_temperature=0.5),
]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
@pytest.mark.parametrize("seed", range(12))
def test_vectorised_matches_reference(kw, seed):
    rows = random_rows(seed)
    result, meta = run(rows, **kw)
    c = dict(meta)
    est = c["estimator"]
    if est == "gigpo":
        expected, a_e, a_s = gigpo(rows, c)
        np.testing.assert_allclose(result.columns["episode_advantage"], a_e, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(result.columns["step_advantage"], a_s, rtol=1e-9, atol=1e-9)
    else:
        expected = {"grpo": grpo, "rloo": rloo, "igpo": igpo, "minform": minform}[est](rows, c)
    np.testing.assert_allclose(result.advantage, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.95])
@pytest.mark.parametrize("seed", range(6))
def test_similarity_clustering_matches_reference(threshold, seed):
    rows = random_rows(100 + seed, text_anchors=True)
    result, meta = run(rows, estimator="gigpo", anchor=f"similar:{threshold}", norm="mean_std")
    expected, _, a_s = gigpo(rows, dict(meta))
    np.testing.assert_allclose(result.columns["step_advantage"], a_s, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(result.advantage, expected, rtol=1e-9, atol=1e-9)
