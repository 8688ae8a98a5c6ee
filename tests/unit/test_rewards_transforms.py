"""Reward transforms: hand-computed cases, an independent reference, and the padding property."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentrm.rewards import transforms as T

rewards_st = st.lists(st.floats(-5, 5, allow_nan=False, allow_infinity=False), min_size=1, max_size=12)


def test_clip_hand_computed():
    assert T.clip([0.9, 0.2, 0.5], eta=0.5).tolist() == pytest.approx([0.0, -0.3, 0.0])
    assert T.clip([1.0, -1.0]).tolist() == [0.0, -1.0]


def test_delta_conventions_hand_computed():
    r = [0.9, 0.4, 0.7]
    assert T.delta(r, "keep").tolist() == pytest.approx([0.5, -0.3, 0.7])
    assert T.delta(r, "drop").tolist() == pytest.approx([0.5, -0.3, 0.0])
    # return-to-go telescopes: keep -> r_t, drop -> r_t - r_K
    assert T.returns_to_go(T.delta(r, "keep")).tolist() == pytest.approx(r)
    assert T.returns_to_go(T.delta(r, "drop")).tolist() == pytest.approx([0.2, -0.3, 0.0])
    with pytest.raises(ValueError, match="keep"):
        T.delta(r, "middle")


def test_delta_empty_and_nan():
    assert T.delta([]).size == 0
    with pytest.raises(ValueError, match="NaN"):
        T.clip([0.1, float("nan")])


def test_gate_hand_computed():
    assert T.gate([0.3, 0.4], outcome=1.0, threshold=1.0).tolist() == [0.3, 0.4]
    assert T.gate([0.3, 0.4], outcome=0.5, threshold=1.0).tolist() == [0.0, 0.0]
    assert T.gate([0.3, 0.4], outcome=None, threshold=0.0).tolist() == [0.0, 0.0]


def test_minform_return_is_min():
    r = [0.8, 0.2, 0.6, 0.9]
    shaped = T.minform(r)
    # return-to-go from t equals min_{k>=t} r_k (independent computation)
    expected = [min(r[t:]) for t in range(len(r))]
    assert T.returns_to_go(shaped).tolist() == pytest.approx(expected)


def _pad(rewards, index, copies):
    """Duplicate turn `index` `copies` times in place (a repeated step)."""
    return rewards[: index + 1] + [rewards[index]] * copies + rewards[index + 1:]


@settings(max_examples=200, deadline=None)
@given(rewards_st, st.data(), st.floats(-2, 2, allow_nan=False), st.sampled_from(["keep", "drop"]))
def test_padding_never_raises_return(rewards, data, eta, last):
    index = data.draw(st.integers(0, len(rewards) - 1))
    copies = data.draw(st.integers(1, 5))
    padded = _pad(rewards, index, copies)
    assert T.clip(padded, eta).sum() <= T.clip(rewards, eta).sum() + 1e-9
    assert T.delta(padded, last).sum() <= T.delta(rewards, last).sum() + 1e-9


@settings(max_examples=100, deadline=None)
@given(rewards_st, st.data())
def test_padding_never_raises_minform_return(rewards, data):
    index = data.draw(st.integers(0, len(rewards) - 1))
    padded = _pad(rewards, index, data.draw(st.integers(1, 5)))
    assert T.minform(padded).sum() <= T.minform(rewards).sum() + 1e-9


def test_sum_form_is_hackable_control():
    """Negative control: the raw sum does rise under padding (what the transforms prevent)."""
    r = [0.5, 0.9]
    assert sum(_pad(r, 1, 3)) > sum(r)


def test_returns_to_go_discounted():
    assert T.returns_to_go([1.0, 1.0, 1.0], gamma=0.5).tolist() == pytest.approx([1.75, 1.5, 1.0])
    assert np.asarray(T.returns_to_go([])).size == 0
