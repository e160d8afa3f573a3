def deep_merge(base: dict, override: dict) -> dict:
    raise NotImplementedError
