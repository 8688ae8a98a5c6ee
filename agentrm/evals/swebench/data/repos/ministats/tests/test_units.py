import pytest

from ministats import parse_duration


def test_seconds():
    assert parse_duration("90s") == 90


def test_minutes():
    assert parse_duration("2m") == 120


def test_bare_number_is_seconds():
    assert parse_duration(" 5 ") == 5


def test_garbage_raises():
    with pytest.raises(ValueError):
        parse_duration("soon")
