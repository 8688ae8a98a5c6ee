from textkit import title_case


def test_small_words_inside_stay_lower():
    assert title_case("war and peace") == "War and Peace"


def test_words_are_normalised():
    assert title_case("hELLO wORLD") == "Hello World"


def test_empty():
    assert title_case("") == ""
