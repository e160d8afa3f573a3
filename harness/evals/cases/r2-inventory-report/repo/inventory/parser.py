from inventory.model import Item


def parse_line(line: str) -> Item:
    raise NotImplementedError
