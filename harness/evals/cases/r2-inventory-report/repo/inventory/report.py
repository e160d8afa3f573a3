from collections.abc import Iterable
from decimal import Decimal

from inventory.model import Item


def total_value(items: Iterable[Item]) -> Decimal:
    raise NotImplementedError


def format_total(items: Iterable[Item]) -> str:
    raise NotImplementedError
