from collections.abc import Iterable
from decimal import Decimal

from inventory.model import Item


def total_value(items: Iterable[Item]) -> Decimal:
    return sum((item.price * item.quantity for item in items), Decimal("0"))


def format_total(items: Iterable[Item]) -> str:
    return f"{total_value(items):.2f}"
