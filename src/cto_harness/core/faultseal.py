"""Sealing that survives faults: whatever breaks while a bundle is being sealed (a full disk, a
read-only remount, a bug), the run still ends in a sealed bundle, or in one line.

The first attempt is the normal seal. If it raises, the run's working folders (`workspace/`,
`private/`: never evidence, usually most of the bytes) are removed to make room, the fault is
recorded as the run's error (verdict `error`, blocker `harness_error` naming it) and the bundle
is sealed again from the start: every file is rewritten atomically, so nothing of the first
attempt survives unlisted. If the second attempt fails too, `HarnessFault` says in one line
where and why (exit 3).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable

from cto_harness.contracts import Report
from cto_harness.core.report import StageResults
from cto_harness.engines.base import RunContext
from cto_harness.errors import HarnessFault


def seal_despite_faults(seal: Callable[[], Report], ctx: RunContext,
                        results: StageResults) -> Report:
    try:
        return seal()
    except Exception as exc:  # any fault at all: the bundle must still be sealed
        first = _describe(exc)
    for name in ("workspace", "private"):
        shutil.rmtree(ctx.run_dir / name, ignore_errors=True)
    reason = f"sealing the bundle failed: {first}"
    results.error = f"{results.error}; {reason}" if results.error else reason
    ctx.events.emit("run.error", error=reason)
    try:
        return seal()
    except Exception as exc:
        raise HarnessFault(f"no bundle could be sealed in {ctx.run_dir}: {first}"
                           + ("" if _describe(exc) == first else f"; then {_describe(exc)}")
                           ) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{type(exc).__name__}: {exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc}"
