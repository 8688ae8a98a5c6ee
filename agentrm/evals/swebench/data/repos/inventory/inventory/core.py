"""Stock counts per item name."""


class OutOfStock(Exception):
    """Raised when removing more of an item than the inventory holds."""


class Inventory:
    """Item name -> quantity; items whose quantity drops to zero disappear."""

    def __init__(self, items=None):
        self._stock = dict(items or {})

    def add(self, name, qty=1):
        if qty <= 0:
            raise ValueError("qty must be positive")
        self._stock[name] = self._stock.get(name, 0) + qty

    def remove(self, name, qty=1):
        """Take `qty` of `name` out; raises OutOfStock when there is not enough."""
        if qty <= 0:
            raise ValueError("qty must be positive")
        have = self._stock.get(name, 0)
        self._stock[name] = have - qty
        if self._stock[name] == 0:
            del self._stock[name]

    def count(self, name):
        return self._stock.get(name, 0)

    def total(self):
        return sum(self._stock.values())

    def items(self):
        return dict(self._stock)

    def merge(self, other):
        """A new inventory holding the stock of both."""
        result = Inventory(self._stock)
        for name, qty in other._stock.items():
            if name in result._stock:
                result._stock[name] += qty
        return result
