"""The engine registry. `--engine NAME` picks an engine; the built-ins are `fake` (the default
lane and every baseline) and `case` (WorkOS Case). An installed package adds one by declaring an
entry point in the group `cto_harness.engines` (`name = "package.module:EngineClass"`), as Inspect
AI does for sandboxes. Nothing is imported before it is asked for: a fake run never loads Case.

This module is imported by the CLI before any command runs: it must stay cheap (no pydantic).
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from cto_harness.errors import HarnessFault, UsageError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from cto_harness.engines.base import Engine

DEFAULT_ENGINE = "fake"
# The engine of the same-run baseline an engine with `needs_baseline` is paired with.
BASELINE_ENGINE = "fake"
ENTRY_POINT_GROUP = "cto_harness.engines"
# The built-in engines, "module:class". A new built-in engine registers here, with one line.
BUILTIN_ENGINES = {
    "fake": "cto_harness.engines.fake.engine:FakeEngine",
    "case": "cto_harness.engines.case.engine:CaseEngine",
    "pi": "cto_harness.engines.pi.engine:PiEngine",
}
_registered: dict[str, type[Engine]] = {}


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Register an engine class under its `name` (for library use and tests); returns it."""
    _registered[cls.name] = cls
    return cls


@cache
def _entry_points() -> dict[str, EntryPoint]:
    from importlib.metadata import entry_points  # ~10 ms, and only a non-built-in engine needs it

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def engine_names() -> list[str]:
    """Every engine that can be asked for, without importing any of them."""
    return sorted(set(_registered) | set(BUILTIN_ENGINES) | set(_entry_points()))


def engine_class(name: str) -> type[Engine]:
    """The class of engine `name`, imported now. Unknown name: a usage error."""
    from cto_harness.engines.base import Engine

    if name in _registered:
        return _registered[name]
    if name in BUILTIN_ENGINES:
        module, _, attr = BUILTIN_ENGINES[name].partition(":")
        cls = getattr(importlib.import_module(module), attr)
    elif name in _entry_points():
        cls = _entry_points()[name].load()
    else:
        raise UsageError(f"unknown engine {name!r} (known: {', '.join(engine_names())})")
    if not (isinstance(cls, type) and issubclass(cls, Engine)) or cls.name != name:
        raise HarnessFault(f"engine {name!r} does not name an Engine subclass called {name!r}")
    return cls


def get_engine(name: str) -> Engine:
    """An instance of engine `name` (engines keep no per-run state: one instance serves many)."""
    return engine_class(name)()


__all__ = [
    "BASELINE_ENGINE",
    "BUILTIN_ENGINES",
    "DEFAULT_ENGINE",
    "ENTRY_POINT_GROUP",
    "engine_class",
    "engine_names",
    "get_engine",
    "register_engine",
]
