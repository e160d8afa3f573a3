def slugify(value: str) -> str:
    """Return a lowercase, hyphen-separated slug for ``value``."""
    raise NotImplementedError("slugify is not implemented yet")
