"""A stock-keeping inventory of named items."""

from inventory.core import Inventory, OutOfStock

__all__ = ["Inventory", "OutOfStock"]
