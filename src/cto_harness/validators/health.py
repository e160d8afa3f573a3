"""Aggregate health (DESIGN section 10): one JSON object, exit 0 only if every part holds.

A missing real provider is reported as `provider: not configured`, not as a failure of health.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cto_harness.settings import Settings


def _timed(func: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        part = func()
    except Exception as exc:
        part = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    part["duration_ms"] = int((time.monotonic() - started) * 1000)
    return part


def _routes(repo_root: Path, settings: Settings) -> dict[str, Any]:
    from cto_harness.validators.routes import validate_routes

    records, violations = validate_routes(repo_root / "docs" / "route", settings)
    return {"status": "ok" if not violations else "failed", "records": len(records),
            "violations": [str(v) for v in violations]}


def _adapter(harness_root: Path) -> dict[str, Any]:
    from cto_harness.validators.adapter import run_checks

    results = run_checks(harness_root)
    failed = [r.to_dict() for r in results if not r.passed]
    return {"status": "ok" if not failed else "failed", "checks": len(results),
            "passed": len(results) - len(failed), "failed": failed}


def _fake_lane(harness_root: Path) -> dict[str, Any]:
    from cto_harness.core.fixtures import list_case_ids
    from cto_harness.core.run import execute_run

    runs = Path(tempfile.mkdtemp(prefix="cto-health-runs-"))
    try:
        environ = {**os.environ, "CTO_HARNESS_RUNS_DIR": str(runs)}
        cases = {}
        for case_id in list_case_ids(harness_root):
            result = execute_run(case_id, "fake", harness_root=harness_root,
                                 settings=Settings.from_env(environ), environ=environ)
            cases[case_id] = {"verdict": result.report.verdict,
                              "duration_ms": result.report.timing.duration_ms}
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    ok = bool(cases) and all(c["verdict"] == "pass" for c in cases.values())
    return {"status": "ok" if ok else "failed", "cases": cases}


def _admission(settings: Settings) -> dict[str, Any]:
    """Each real engine's provider (configured or not) and its admission registry."""
    from cto_harness.engines import engine_names, get_engine
    from cto_harness.providers.registry import admission_summary

    providers: dict[str, str] = {}
    registries: dict[str, Any] = {}
    for name in engine_names():
        engine = get_engine(name)
        configured = engine.provider_configured(engine.load_settings(os.environ))
        if configured is None or engine.provider is None:
            continue  # ships inside the harness: nothing to configure or admit
        providers[name] = "configured" if configured else "not configured"
        registries[name] = admission_summary(settings, engine.provider)
    valid = all(r.get("valid", False) for r in registries.values())
    return {
        "status": "ok" if valid else "failed",
        "provider": "configured" if "configured" in providers.values() else "not configured",
        "providers": providers,
        "registries": registries,
    }


def _isolation(settings: Settings) -> dict[str, Any]:
    from cto_harness.sandbox.isolation import describe_available

    return {"status": "ok", **describe_available(settings)}


def health(repo_root: Path, harness_root: Path, settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or Settings.from_env()
    started = time.monotonic()
    parts = {
        "route_validator": _timed(lambda: _routes(repo_root, settings)),
        "adapter_validator": _timed(lambda: _adapter(harness_root)),
        "fake_lane": _timed(lambda: _fake_lane(harness_root)),
        "admission": _timed(lambda: _admission(settings)),
        "isolation": _timed(lambda: _isolation(settings)),
    }
    return {
        "ok": all(p["status"] == "ok" for p in parts.values()),
        "provider": parts["admission"].get("provider", "unknown"),
        "parts": parts,
        "duration_ms": int((time.monotonic() - started) * 1000),
    }
