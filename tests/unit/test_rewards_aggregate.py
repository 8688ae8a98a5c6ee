"""agentrm/rewards/aggregate.py: hand-computed cases, an independent numpy reference, invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentrm.rewards.aggregate import (
    AGGREGATIONS,
    aggregate,
    future_min,
    minform_credit,
    softmin_weights,
)

scores = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=30)


def test_hand_computed_cases():
    steps = [0.9, 0.2, 0.6]
    assert aggregate(steps, "min") == 0.2
    assert aggregate(steps, "last") == 0.6
    assert aggregate(steps, "mean") == pytest.approx(1.7 / 3)
    assert aggregate(steps, "product") == pytest.approx(0.9 * 0.2 * 0.6)
    # minform, T = 1: w ∝ exp(-r)
    w = [math.exp(-0.9), math.exp(-0.2), math.exp(-0.6)]
    expected = sum(wi * r for wi, r in zip(w, steps, strict=False)) / sum(w)
    assert aggregate(steps, "minform", temperature=1.0) == pytest.approx(expected)


def test_abstentions_are_dropped_and_all_abstaining_is_none_not_zero():
    assert aggregate([None, 0.5, None, 0.7], "min") == 0.5
    assert aggregate([0.3, None], "last") == 0.3
    for how in AGGREGATIONS:
        assert aggregate([], how) is None
        assert aggregate([None, None], how) is None


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate([0.5], "median")
    with pytest.raises(ValueError, match="NaN"):
        aggregate([0.5, float("nan")], "min")
    with pytest.raises(ValueError, match="temperature"):
        softmin_weights([0.5], temperature=-1)


@settings(max_examples=200, deadline=None)
@given(scores, st.floats(0.01, 10.0))
def test_minform_matches_numpy_reference(values, temperature):
    r = np.array(values, dtype=np.float64)
    logits = -r / temperature
    w = np.exp(logits - logits.max())
    w /= w.sum()
    assert aggregate(values, "minform", temperature) == pytest.approx(float((w * r).sum()), abs=1e-9)
    assert sum(minform_credit(values, temperature)) == pytest.approx(float((w * r).sum()), abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(scores, st.floats(0.01, 10.0))
def test_minform_lies_between_min_and_mean(values, temperature):
    value = aggregate(values, "minform", temperature)
    assert min(values) - 1e-12 <= value <= aggregate(values, "mean") + 1e-12


def test_minform_limits_hard_min_and_mean():
    values = [0.8, 0.1, 0.5, 0.1]
    assert aggregate(values, "minform", temperature=0.0) == pytest.approx(0.1)
    assert softmin_weights(values, 0.0) == [0.0, 0.5, 0.0, 0.5]
    assert aggregate(values, "minform", temperature=1e-4) == pytest.approx(0.1, abs=1e-9)
    assert aggregate(values, "minform", temperature=1e6) == pytest.approx(np.mean(values), abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(scores)
def test_padding_with_good_steps_never_raises_min_or_minform_above_worst(values):
    """Repeating a correct step (the Clip/Delta hack) must not lift a min-form score above the
    worst step; the mean, by contrast, can be farmed."""
    padded = values + [1.0] * 10
    assert aggregate(padded, "min") == aggregate(values, "min")
    assert aggregate(padded, "minform", 0.1) <= min(values) + 0.1 * math.log(len(padded)) + 1e-9


@settings(max_examples=100, deadline=None)
@given(scores)
def test_future_min_against_direct_definition(values):
    expected = [min(values[t:]) for t in range(len(values))]
    assert future_min(values) == expected
