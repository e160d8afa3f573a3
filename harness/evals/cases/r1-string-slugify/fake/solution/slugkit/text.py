import re


def slugify(value: str) -> str:
    """Return a lowercase, hyphen-separated slug for ``value``."""
    return "-".join(re.findall(r"[a-z0-9]+", value.lower()))
