"""Engines are registered by name; `--engine` picks one."""

from __future__ import annotations

from cto_harness.engines.base import Engine, Launch, ProviderOutcome, RunContext
from cto_harness.errors import UsageError

_ENGINES: dict[str, type[Engine]] = {}


def register_engine(cls: type[Engine]) -> type[Engine]:
    _ENGINES[cls.name] = cls
    return cls


def engine_names() -> list[str]:
    _load_builtins()
    return sorted(_ENGINES)


def get_engine(name: str) -> Engine:
    _load_builtins()
    if name not in _ENGINES:
        raise UsageError(f"unknown engine {name!r} (known: {', '.join(sorted(_ENGINES))})")
    return _ENGINES[name]()


def _load_builtins() -> None:
    # Imported here, not at module top, so that engine modules can import this registry.
    from cto_harness.engines import case, fake  # noqa: F401


__all__ = [
    "Engine",
    "Launch",
    "ProviderOutcome",
    "RunContext",
    "engine_names",
    "get_engine",
    "register_engine",
]
