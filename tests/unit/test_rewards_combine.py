"""Combination of stored scores: SPEC parsing, LSC, weighted sums, gate, infrastructure rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agentrm.errors import InputError
from agentrm.rewards import combine as C
from agentrm.types import Score, ScoreLevel, Trajectory, Turn


def traj(tid: str, n: int) -> Trajectory:
    return Trajectory(tid, "task", "g", turns=[Turn(i, [], {"role": "assistant", "content": str(i)}) for i in range(n)])


def turn(scorer, tid, i, v, chash="h1", **details):
    return Score(scorer, tid, v, ScoreLevel.TURN, i, "1", chash, details)


def outcome(scorer, tid, v, chash="h2", **details):
    return Score(scorer, tid, v, ScoreLevel.TRAJECTORY, None, "1", chash, details)


def test_log_sigmoid_independent():
    xs = np.array([-800.0, -3.0, 0.0, 2.5, 800.0])
    expected = [math.log(1 / (1 + math.exp(-x))) if abs(x) < 700 else (x if x < 0 else 0.0) for x in xs]
    assert C.log_sigmoid(xs).tolist() == pytest.approx(expected)


def test_log_sigmoid_and_is_log_of_product():
    a, b = np.array([0.3, -1.0]), np.array([2.0, 0.5])
    got = C.log_sigmoid_and([a, b], [0.1, -0.2])
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert got == pytest.approx(np.log(sig(a - 0.1) * sig(b + 0.2)))
    with pytest.raises(ValueError):
        C.log_sigmoid_and([a], [0.0, 1.0])


def test_logit_clamps_hard_verifier():
    out = C.logit([0.0, 0.5, 1.0])
    assert np.isfinite(out).all() and out[1] == 0.0 and out[0] < -10 and out[2] > 10


def test_weighted_sum():
    assert C.weighted_sum([np.array([1.0, 2.0]), np.array([3.0, 4.0])], [0.5, -1.0]).tolist() == [-2.5, -3.0]


def test_parse_spec():
    spec = C.parse_spec("tests + 0.5*prm@abc|clip:0.8|delta:drop ; gate=tests>=1 ; missing=none")
    assert [t.scorer for t in spec.terms] == ["tests", "prm"]
    assert spec.terms[1].config_hash == "abc" and spec.terms[1].weight == 0.5
    assert spec.terms[1].transforms == [("clip", "0.8"), ("delta", "drop")]
    assert spec.gate == ("tests", None, 1.0) and spec.missing == "none"


@pytest.mark.parametrize("bad,msg", [
    ("", "empty"), ("prm|wobble", "unknown transform"), ("2**prm", "cannot read term"),
    ("prm|clip:x", "needs a number"), ("prm ; gate=tests", "gate wants"), ("prm ; speed=3", "unknown option"),
    ("prm|delta:middle", "keep or drop"),
])
def test_parse_spec_errors(bad, msg):
    with pytest.raises(InputError, match=msg):
        C.parse_spec(bad)


def test_combine_turn_and_outcome_terms():
    t = traj("a", 3)
    scores = [turn("prm", "a", i, v) for i, v in enumerate([0.9, 0.2, 0.5])] + [outcome("tests", "a", 1.0)]
    (row,) = C.combine_scores("tests + 2*prm|clip:0.5", [t], scores)
    clipped = [min(v - 0.5, 0) * 2 for v in [0.9, 0.2, 0.5]]
    assert row.terms["2*prm|clip:0.5"] == pytest.approx(clipped)
    assert row.terms["tests"] == [0.0, 0.0, 1.0]
    assert row.rewards == pytest.approx([clipped[0], clipped[1], clipped[2] + 1.0])
    assert row.total == pytest.approx(sum(clipped) + 1.0)


def test_gate_closes_dense_terms_only():
    t = traj("a", 2)
    scores = [turn("prm", "a", 0, 0.7), turn("prm", "a", 1, 0.8), outcome("tests", "a", 0.0)]
    (row,) = C.combine_scores("tests + prm ; gate=tests>=1", [t], scores)
    assert row.rewards == [0.0, 0.0]
    scores[-1] = outcome("tests", "a", 1.0)
    (row,) = C.combine_scores("tests + prm ; gate=tests>=1", [t], scores)
    assert row.rewards == pytest.approx([0.7, 1.8])


def test_infrastructure_failure_is_not_zero():
    t = traj("a", 2)
    scores = [turn("prm", "a", 0, 0.7), turn("prm", "a", 1, 0.8),
              outcome("tests", "a", None, error="docker died", failure="infrastructure")]
    (row,) = C.combine_scores("tests + prm", [t], scores)
    assert row.rewards is None and row.total is None
    assert any("infrastructure" in n for n in row.notes)


def test_missing_turn_policy():
    t = traj("a", 2)
    scores = [turn("prm", "a", 0, 0.7)]
    (row,) = C.combine_scores("prm", [t], scores)
    assert row.rewards == [0.7, 0.0] and row.notes
    (row,) = C.combine_scores("prm ; missing=none", [t], scores)
    assert row.rewards is None


def test_several_configurations_must_be_chosen():
    t = traj("a", 1)
    scores = [turn("prm", "a", 0, 0.7, chash="x"), turn("prm", "a", 0, 0.1, chash="y")]
    with pytest.raises(InputError, match="prm@HASH"):
        C.combine_scores("prm", [t], scores)
    (row,) = C.combine_scores("prm@y", [t], scores)
    assert row.rewards == [0.1]


def test_lsc_term_via_spec():
    t = traj("a", 1)
    scores = [outcome("judge", "a", 0.9), outcome("tests", "a", 1.0)]
    (row,) = C.combine_scores("judge|logit|lsig + tests|logit|lsig:0.5", [t], scores)
    expected = C.log_sigmoid(C.logit(0.9)) + C.log_sigmoid(C.logit(1.0) - 0.5)
    assert row.total == pytest.approx(float(expected))


def test_min_and_softmin_via_spec():
    t = traj("a", 3)
    scores = [turn("prm", "a", i, v) for i, v in enumerate([0.8, 0.2, 0.6])]
    (row,) = C.combine_scores("prm|min", [t], scores)
    assert row.total == pytest.approx(0.2)  # the return is the worst turn
    (soft,) = C.combine_scores("prm|softmin:0.1", [t], scores)
    w = np.exp(-np.array([0.8, 0.2, 0.6]) / 0.1)
    assert soft.total == pytest.approx(float((w * [0.8, 0.2, 0.6]).sum() / w.sum()))
