"""A suite folder read for its page: `suite.json` is an index, not evidence (it is not signed),
so every run it lists is re-verified from its own bundle, the verdicts shown are the bundles'
own, and pass@k is recomputed from the verified runs only. Where suite.json disagrees with a
bundle, the page says so. A run counts once, under the case its own report names, and only as
the bundle the suite's signed list (`signers.dsse.json`) names at that place, of the suite's
engine: a row that lists a bundle again (the same run id), under another case, or a bundle
copied in from elsewhere (another suite, the runs history, a Case run's fake baseline) is
disputed and counts nowhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cto_harness.core.suite import SUITE_FILE, aggregate
from cto_harness.inert import read_json
from cto_harness.viewer.runview import RunView, load_run, safe_path

MAX_REPEATS = 500
MAX_GRID_CELLS = 20_000
# Rows of suite.json read: as many as the grid has cells. Each row costs a lookup (and a bundle
# check); past this the unsigned index is not a suite this harness wrote.
MAX_ROWS = MAX_GRID_CELLS


@dataclass(frozen=True)
class SuiteRun:
    index: int
    case_id: str
    repeat: int
    listed_verdict: str | None
    run: RunView | None
    note: str = ""
    # suite.json lists this bundle again, or under a case its report does not name.
    disputed: bool = False

    @property
    def verified(self) -> bool:
        return self.run is not None and self.run.verification.ok and not self.disputed

    @property
    def status(self) -> str:
        """What the grid shows: the bundle's verdict if it verified, else why not."""
        if self.run is None:
            return "missing"
        return self.run.verdict if self.verified else "unverified"


@dataclass(frozen=True)
class SuiteView:
    root: Path
    engine: str
    k: int
    cases: list[str]
    created_at: str
    runs: list[SuiteRun]
    aggregates: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def verified_count(self) -> int:
        return sum(1 for r in self.runs if r.verified)

    @property
    def all_verified(self) -> bool:
        return bool(self.runs) and self.verified_count == len(self.runs) and not self.notes

    @cached_property
    def by_case(self) -> dict[str, list[SuiteRun]]:
        """Each case's runs, in suite.json's order: found in one pass, never by scanning every
        run for every case (quadratic in the rows of an unsigned suite.json)."""
        found: dict[str, list[SuiteRun]] = {}
        for run in self.runs:
            found.setdefault(run.case_id, []).append(run)
        return found

    def grid(self) -> list[tuple[str, list[SuiteRun | None]]]:
        """Per case, its runs by repeat (None where no run is listed)."""
        rows = []
        for case_id in self.cases:
            by_repeat = {r.repeat: r for r in self.by_case.get(case_id, [])}
            rows.append((case_id, [by_repeat.get(i) for i in range(1, self.k + 1)]))
        return rows

    def max_duration(self) -> int:
        return max((r.run.duration_ms or 0 for r in self.runs if r.run), default=0)


def is_suite(path: Path) -> bool:
    return (path / SUITE_FILE).is_file()


def _endorsed(root: Path, public_key: Path | None) -> tuple[dict[str, str], list[str]]:
    """The suite's signed list of its runs (`signers.dsse.json`, checked with the trusted key):
    run folder -> manifest digest; and a note when it does not hold (then nothing counts)."""
    from cto_harness.errors import SignatureInvalid
    from cto_harness.evidence.suite_signers import (
        SIGNERS_FILE,
        endorsed_manifests,
        local_public_key,
    )

    if public_key is None:
        from cto_harness.settings import Settings

        public_key = local_public_key(Settings.from_env().keys_dir)
    try:
        return endorsed_manifests(root, public_key), []
    except SignatureInvalid as exc:
        return {}, [f"the suite's signed list of its runs ({SIGNERS_FILE}) does not hold: {exc}"]


def _unlisted_endorsed_runs(endorsed: dict[str, str], listed: list[dict[str, Any]]) -> list[str]:
    """Runs the suite's signed list names and suite.json does not: leaving a failed run out of
    the unsigned index would otherwise raise the pass rate of a page that says every bundle
    verified."""
    missing = sorted(set(endorsed) - {str(r.get("run_dir")) for r in listed})
    if not missing:
        return []
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return [f"suite.json leaves out {len(missing)} run(s) the suite signed for: {shown}"]


def _manifest_digest(run_dir: Path) -> str | None:
    from cto_harness.fsutil import sha256_file

    try:
        return sha256_file(run_dir / "artifacts.sha256")
    except OSError:
        return None


def load_suite(root: Path, public_key: Path | None = None) -> SuiteView:
    root = root.absolute()
    data = read_json(root / SUITE_FILE)
    if not isinstance(data, dict):
        data = {}
    notes = [] if data else ["suite.json is missing or does not parse"]
    listed = [r for r in data.get("runs", []) if isinstance(r, dict)] \
        if isinstance(data.get("runs"), list) else []
    if len(listed) > MAX_ROWS:
        notes.append(f"suite.json lists {len(listed)} runs; only the first {MAX_ROWS} are read")
        listed = listed[:MAX_ROWS]
    runs: list[SuiteRun] = []
    seen: dict[str, int] = {}  # run id -> the row that first listed its bundle
    # Each bundle folder checked and read once, however often suite.json names it: a row costs
    # a lookup, never another verification (20,000 rows of one large bundle took hours).
    loaded: dict[Path, RunView] = {}
    endorsed, endorsement_notes = _endorsed(root, public_key)
    engine = data.get("engine")
    for index, row in enumerate(listed):
        case_id = str(row.get("case_id", "?"))
        raw_repeat = row.get("repeat")
        repeat = raw_repeat if isinstance(raw_repeat, int) else 0
        listed_verdict = row.get("verdict") if isinstance(row.get("verdict"), str) else None
        rel = row.get("run_dir")
        run: RunView | None = None
        note = ""
        if isinstance(rel, str):
            path = safe_path(root, rel)
            if path is None:
                note = "suite.json names a bundle path outside the suite folder: not read"
            elif path in loaded:
                run = loaded[path]
            elif path.is_dir():
                run = loaded[path] = load_run(path, public_key)
            else:
                note = "suite.json names a bundle that is not there"
        else:
            note = f"no bundle ({row.get('status', 'pending')})"
        disputed = False
        if run is not None and run.verification.ok:
            if endorsed.get(str(rel)) != _manifest_digest(run.root):
                # A bundle that verifies but is not the one the suite signed for at this place:
                # copied in from another suite, the runs history or a run's baseline.
                disputed = True
                note = "the suite's signed list does not name this bundle here: not counted"
            elif run.engine != engine:
                disputed = True
                note = f"the bundle is a run of the {run.engine} engine, the suite's is {engine}"
            elif run.case_id != case_id:
                disputed = True
                note = f"suite.json lists case {case_id}, the bundle holds {run.case_id}"
            elif run.run_id in seen:
                disputed = True
                note = (f"suite.json lists run {run.run_id} again (first in row "
                        f"{seen[run.run_id] + 1}): counted once")
            elif listed_verdict != run.verdict:
                note = f"suite.json says {listed_verdict}, the bundle says {run.verdict}"
            seen.setdefault(run.run_id, index)
        runs.append(SuiteRun(index, case_id, repeat, listed_verdict, run, note, disputed))

    notes += endorsement_notes or _unlisted_endorsed_runs(endorsed, listed)
    # In order, each once (a dict, not `in` on a list: quadratic in suite.json's rows).
    cases = list(dict.fromkeys(
        [str(c) for c in data.get("cases", []) if isinstance(c, str)]
        if isinstance(data.get("cases"), list) else []))
    declared_cases = set(cases)
    cases += [c for c in dict.fromkeys(r.case_id for r in runs) if c not in declared_cases]
    raw_declared = data.get("repeat")
    declared = raw_declared if isinstance(raw_declared, int) else 1
    # Columns of the grid: bounded, whatever suite.json claims.
    k = min(max([declared, 1, *(r.repeat for r in runs)]), MAX_REPEATS)
    if len(cases) * k > MAX_GRID_CELLS:
        # A few bytes of unsigned suite.json (many case ids, a huge repeat) would otherwise
        # make a grid of millions of cells: only what it lists runs for is shown.
        notes.append(f"suite.json declares {len(cases)} cases and {declared} repeats; "
                     "only the cases and repeats it lists runs for are shown")
        cases = list(dict.fromkeys(r.case_id for r in runs))
        k = min(max([1, *(r.repeat for r in runs)]), MAX_REPEATS)
    verified = [{"case_id": r.case_id, "verdict": r.run.verdict, "duration_ms": r.run.duration_ms}
                for r in runs if r.verified and r.run is not None]
    aggregates = aggregate(verified, cases, k)
    raw_aggregates = data.get("aggregates")
    listed_aggregates: dict[str, Any] = raw_aggregates if isinstance(raw_aggregates, dict) else {}
    for case_id, agg in aggregates.items():
        theirs = listed_aggregates.get(case_id)
        if isinstance(theirs, dict) and theirs.get("passes") != agg["passes"]:
            notes.append(f"suite.json counts {theirs.get('passes')} passes for {case_id}; "
                         f"the verified bundles show {agg['passes']}")
    return SuiteView(
        root=root, engine=str(data.get("engine", "?")), k=k, cases=cases,
        created_at=str(data.get("created_at", "")), runs=runs, aggregates=aggregates, notes=notes,
    )
