from slugkit.text import slugify

__all__ = ["slugify"]
