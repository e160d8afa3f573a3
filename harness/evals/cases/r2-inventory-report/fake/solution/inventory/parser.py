from decimal import Decimal

from inventory.model import Item


def parse_line(line: str) -> Item:
    fields = [field.strip() for field in line.split(",")]
    if len(fields) != 3:
        raise ValueError(f"expected 3 fields, got {len(fields)}: {line!r}")
    name, quantity_text, price_text = fields
    quantity = int(quantity_text)
    if quantity < 0:
        raise ValueError(f"negative quantity: {line!r}")
    return Item(name, quantity, Decimal(price_text))
