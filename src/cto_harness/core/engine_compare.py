"""`suite --engine a,b`: the same cases and repeats under several engines, one suite each
(`<suite-dir>/<engine>/`, resumable like any suite), and `engines.json` beside them with each
case's aggregates per engine side by side. Every figure is read from the engines' own suite.json,
which the suite coordinator filled from verified bundles only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cto_harness.core.suite import SUITE_FILE, SuiteOutcome, run_suite
from cto_harness.errors import EXIT_BLOCKED, EXIT_ERROR, EXIT_FAIL, EXIT_PASS
from cto_harness.fsutil import atomic_write_json

COMPARISON_SCHEMA = "cto-harness.engine-comparison/1"
COMPARISON_FILE = "engines.json"
# Which exit code wins when engines disagree: the worst one.
_SEVERITY: dict[int, int] = {EXIT_PASS: 0, EXIT_BLOCKED: 1, EXIT_FAIL: 2, EXIT_ERROR: 3}


@dataclass
class ComparisonOutcome:
    suite_dir: Path
    data: dict[str, Any]
    outcomes: dict[str, SuiteOutcome]
    exit_code: int
    interrupted: bool


def compare_engines(
    case_ids: Sequence[str], *, harness_root: Path, engines: Sequence[str], repeat: int,
    jobs: int, fresh: bool, suite_dir: Path, retry: frozenset[str] = frozenset(),
    challenge: str | None = None,
) -> ComparisonOutcome:
    """Run one suite per engine (in the order given), then write `engines.json`."""
    outcomes: dict[str, SuiteOutcome] = {}
    for engine in engines:
        outcomes[engine] = run_suite(case_ids, harness_root=harness_root, engine=engine,
                                     repeat=repeat, jobs=jobs, fresh=fresh, retry=retry,
                                     challenge=challenge, suite_dir=suite_dir / engine)
        if outcomes[engine].interrupted:
            break
    k = repeat
    cases = {case_id: {engine: _figures(outcome.data["aggregates"].get(case_id, {}), k)
                       for engine, outcome in outcomes.items()}
             for case_id in case_ids}
    data = {
        "schema": COMPARISON_SCHEMA, "suite_dir": str(suite_dir), "engines": list(engines),
        "repeat": repeat, "k": k,
        "suites": {engine: str(Path(engine) / SUITE_FILE) for engine in outcomes},
        "cases": cases,
        "totals": {engine: outcome.data["totals"] for engine, outcome in outcomes.items()},
    }
    atomic_write_json(suite_dir / COMPARISON_FILE, data)
    interrupted = any(o.interrupted for o in outcomes.values()) or len(outcomes) < len(engines)
    code = max((o.exit_code for o in outcomes.values()), key=lambda c: _SEVERITY.get(c, 3),
               default=EXIT_ERROR)
    return ComparisonOutcome(suite_dir, data, outcomes, EXIT_ERROR if interrupted else code,
                             interrupted)


def _figures(aggregate: dict[str, Any], k: int) -> dict[str, Any]:
    keys = ("runs", "passes", "fails", "blocked", "errors", "pass@1", f"pass@{k}",
            "median_duration_ms")
    return {key: aggregate.get(key) for key in keys}


def comparison_table(data: dict[str, Any]) -> str:
    """One row per case, one column per engine: `passes/runs pass@1 pass@k`."""
    k, engines = data["k"], data["engines"]
    header = ["case", *engines]
    rows = [header]
    for case_id, per_engine in data["cases"].items():
        row = [case_id]
        for engine in engines:
            f = per_engine.get(engine)
            if not f or f.get("runs") is None:
                row.append("not run")
                continue
            blocked = f" ({f['blocked']} blocked)" if f.get("blocked") else ""
            at_k = f" pass@{k} {_fmt(f.get(f'pass@{k}'))}" if k != 1 else ""
            row.append(f"{f['passes']}/{f['runs']} pass@1 {_fmt(f['pass@1'])}{at_k}{blocked}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append(f"engines.json: {Path(data['suite_dir']) / COMPARISON_FILE}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
