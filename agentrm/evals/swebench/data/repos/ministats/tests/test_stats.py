import pytest

from ministats import histogram, mean, median


def test_mean():
    assert mean([1, 2, 3, 4]) == 2.5


def test_mean_of_nothing_raises():
    with pytest.raises(ValueError):
        mean([])


def test_median_odd_length():
    assert median([3, 1, 2]) == 2


def test_median_of_nothing_raises():
    with pytest.raises(ValueError):
        median([])


def test_histogram_interior_values():
    assert histogram([0, 1, 2, 3], 2, lo=0, hi=4) == [2, 2]


def test_histogram_needs_a_bin():
    with pytest.raises(ValueError):
        histogram([1], 0)
