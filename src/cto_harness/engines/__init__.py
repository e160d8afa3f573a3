"""Engines are registered by name; `--engine` picks one."""

from __future__ import annotations

import importlib

from cto_harness.engines.base import Engine, Launch, ProviderOutcome, RunContext
from cto_harness.errors import UsageError

_ENGINES: dict[str, type[Engine]] = {}
# Built-in engines, imported only when asked for: a fake run never loads the Case engine.
_BUILTIN_MODULES = {"fake": "cto_harness.engines.fake.engine", "case": "cto_harness.engines.case.engine"}


def register_engine(cls: type[Engine]) -> type[Engine]:
    _ENGINES[cls.name] = cls
    return cls


def engine_names() -> list[str]:
    return sorted(set(_ENGINES) | set(_BUILTIN_MODULES))


def get_engine(name: str) -> Engine:
    if name not in _ENGINES and name in _BUILTIN_MODULES:
        # Imported here, not at module top, so that engine modules can import this registry.
        importlib.import_module(_BUILTIN_MODULES[name])
    if name not in _ENGINES:
        raise UsageError(f"unknown engine {name!r} (known: {', '.join(engine_names())})")
    return _ENGINES[name]()


__all__ = [
    "Engine",
    "Launch",
    "ProviderOutcome",
    "RunContext",
    "engine_names",
    "get_engine",
    "register_engine",
]
