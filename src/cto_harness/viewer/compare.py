"""`view A B`: two runs, or two suites, side by side. Only verified evidence counts towards a
comparison's figures; an unverified side is shown, and marked, but never scored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cto_harness.viewer.runview import RunView
from cto_harness.viewer.suiteview import SuiteView


@dataclass(frozen=True)
class FileChange:
    path: str
    in_a: bool
    in_b: bool
    same_patch: bool | None  # both changed it: identical hunks?


@dataclass(frozen=True)
class TestChange:
    name: str
    a: str
    b: str


@dataclass(frozen=True)
class RunComparison:
    a: RunView
    b: RunView
    files: list[FileChange]
    tests: list[TestChange]

    @property
    def scored(self) -> bool:
        return self.a.verification.ok and self.b.verification.ok


def _patches(diff: str) -> dict[str, str]:
    """patch.diff split per file (keyed by the b/ path)."""
    parts: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in diff.split("\n"):  # git's line end only (not U+2028 inside a line)
        if line.startswith("diff --git "):
            if current is not None:
                parts[current] = "\n".join(lines)
            current = line.rsplit(" b/", 1)[-1]
            lines = []
        elif not line.startswith("index "):
            lines.append(line)
    if current is not None:
        parts[current] = "\n".join(lines)
    return parts


def _same_patch(a: str | None, b: str | None) -> bool | None:
    """Whether two runs changed a file the same way; None (unknown) when either patch could
    not be found under that name (git quotes a name that is not plain ASCII in its headers):
    two missing patches are no evidence of the same change."""
    return None if a is None or b is None else a == b


def compare_runs(a: RunView, b: RunView) -> RunComparison:
    pa, pb = _patches(a.diff), _patches(b.diff)
    paths_a, paths_b = set(a.changed_paths), set(b.changed_paths)
    files = [
        FileChange(p, p in paths_a, p in paths_b, _same_patch(pa.get(p), pb.get(p))
                   if p in paths_a and p in paths_b else None)
        for p in sorted(paths_a | paths_b)
    ]
    results_a = {t.name: t.outcome for t in a.tests.tests}
    results_b = {t.name: t.outcome for t in b.tests.tests}
    tests = [TestChange(n, results_a.get(n, "—"), results_b.get(n, "—"))
             for n in sorted(set(results_a) | set(results_b))]
    return RunComparison(a, b, files, tests)


@dataclass(frozen=True)
class CaseDelta:
    case_id: str
    a: dict[str, Any] | None  # the verified aggregates of that side, or None when absent
    b: dict[str, Any] | None
    files_a: list[str]
    files_b: list[str]
    unverified_a: int
    unverified_b: int

    @property
    def delta(self) -> float | None:
        if not self.a or not self.b:
            return None
        ra, rb = self.a.get("pass_rate"), self.b.get("pass_rate")
        return None if ra is None or rb is None else rb - ra

    @property
    def trend(self) -> str:
        delta = self.delta
        if delta is None:
            return "n/a"
        return "better" if delta > 1e-9 else "worse" if delta < -1e-9 else "same"


@dataclass(frozen=True)
class SuiteComparison:
    a: SuiteView
    b: SuiteView
    cases: list[CaseDelta]

    def count(self, trend: str) -> int:
        return sum(1 for c in self.cases if c.trend == trend)


def _files(suite: SuiteView, case_id: str) -> list[str]:
    found = {p for r in suite.by_case.get(case_id, []) if r.verified and r.run
             for p in r.run.changed_paths}
    return sorted(found)


def _side(suite: SuiteView, case_id: str) -> dict[str, Any] | None:
    agg = suite.aggregates.get(case_id)
    return agg if agg and agg.get("runs") else None


def compare_suites(a: SuiteView, b: SuiteView) -> SuiteComparison:
    cases = list(dict.fromkeys([*a.cases, *b.cases]))
    rows = [
        CaseDelta(
            case_id=c, a=_side(a, c), b=_side(b, c), files_a=_files(a, c), files_b=_files(b, c),
            unverified_a=sum(1 for r in a.by_case.get(c, []) if not r.verified),
            unverified_b=sum(1 for r in b.by_case.get(c, []) if not r.verified),
        )
        for c in cases
    ]
    return SuiteComparison(a, b, rows)
