import pytest

from textkit import wrap


def test_short_text_is_one_line():
    assert wrap("hello world", 20) == ["hello world"]


def test_empty_text_has_no_lines():
    assert wrap("", 10) == []


def test_long_word_is_not_broken():
    assert wrap("extraordinarily long", 5) == ["extraordinarily", "long"]


def test_width_must_be_positive():
    with pytest.raises(ValueError):
        wrap("a", 0)
