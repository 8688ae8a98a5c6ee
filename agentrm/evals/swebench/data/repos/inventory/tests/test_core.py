import pytest

from inventory import Inventory


def test_add_and_count():
    inv = Inventory()
    inv.add("apple", 3)
    assert inv.count("apple") == 3


def test_remove_to_zero_forgets_item():
    inv = Inventory({"apple": 2})
    inv.remove("apple", 2)
    assert inv.items() == {}


def test_add_rejects_non_positive():
    with pytest.raises(ValueError):
        Inventory().add("apple", 0)


def test_merge_adds_shared_items():
    merged = Inventory({"apple": 1}).merge(Inventory({"apple": 2}))
    assert merged.count("apple") == 3


def test_total():
    assert Inventory({"a": 1, "b": 2}).total() == 3
