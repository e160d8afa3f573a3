"""Each test with its result, from what the bundle holds.

Preferred: structured results the harness recorded itself (`verification.tests` in report.json:
a list of objects with an id or name and an outcome). Otherwise the verbose lines of `test.log`
(unittest `-v`, pytest `-v`) are read, and the page says so: that text is written by the tested
code's own process, so it is a reading aid, never evidence (the verdict uses the harness's counts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

STRUCTURED = "structured results recorded by the harness (report.json verification.tests)"
FROM_LOG = ("read from test.log, text the tested code's own process wrote: a reading aid, "
            "not evidence")
NONE = "no per-test results in this bundle"

_UNITTEST_LINE = re.compile(
    r"^(?P<name>\w+) \((?P<id>[\w.]+)\)(?:\n.*?)? \.\.\. "
    r"(?P<result>ok|FAIL|ERROR|skipped.*|expected failure|unexpected success)$",
    re.MULTILINE,
)
_UNITTEST_BLOCK = re.compile(
    r"^={20,}\n(?P<kind>FAIL|ERROR): (?P<name>\w+) \((?P<id>[\w.]+)\)[^\n]*\n(?:[^\n]*\n)??"
    r"-{20,}\n"
    r"(?P<body>.*?)(?=^={20,}$|^-{20,}$|\Z)",
    re.MULTILINE | re.DOTALL,
)
# The id is taken whole (possessive: no backtracking, linear in the line) and must hold `::`;
# `\S+::\S+` backtracked quadratically on a long line of colons (minutes for 256 KiB).
_PYTEST_LINE = re.compile(
    r"^(?P<id>\S++) (?P<result>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b", re.MULTILINE
)
_OUTCOMES = {
    "ok": "passed", "passed": "passed", "pass": "passed", "success": "passed",
    "fail": "failed", "failed": "failed", "failure": "failed", "error": "error",
    "errored": "error", "expected failure": "passed", "xfail": "passed",
    "unexpected success": "failed", "xpass": "failed",
    # The harness's own driver (verification.tests).
    "expected_failure": "passed", "unexpected_success": "failed", "no_outcome": "error",
    "not_reported": "error",
}


@dataclass(frozen=True)
class TestResult:
    name: str
    outcome: str  # passed, failed, error, skipped, unknown
    detail: str = ""


@dataclass(frozen=True)
class TestResults:
    source: str
    structured: bool
    tests: list[TestResult] = field(default_factory=list)

    @property
    def failed(self) -> list[TestResult]:
        return [t for t in self.tests if t.outcome in ("failed", "error")]

    def count(self, outcome: str) -> int:
        return sum(1 for t in self.tests if t.outcome == outcome)


def _outcome(raw: str) -> str:
    key = raw.strip().lower()
    if key.startswith("skip"):
        return "skipped"
    return _OUTCOMES.get(key, "unknown")


def from_report(verification: dict[str, Any]) -> TestResults | None:
    raw = verification.get("tests")
    if not isinstance(raw, list) or not raw:
        return None
    tests = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        name = item.get("id") or item.get("name") or item.get("nodeid") or "?"
        outcome = item.get("outcome") or item.get("status") or item.get("result") or ""
        detail = item.get("message") or item.get("detail") or item.get("longrepr") or ""
        tests.append(TestResult(str(name), _outcome(str(outcome)), str(detail)[:4000]))
    return TestResults(STRUCTURED, True, tests)


def from_log(log: str) -> TestResults | None:
    tests: list[TestResult] = []
    details = {m.group("id"): m.group("body").strip()[:4000]
               for m in _UNITTEST_BLOCK.finditer(log)}
    for match in _UNITTEST_LINE.finditer(log):
        test_id = match.group("id")
        tests.append(TestResult(test_id, _outcome(match.group("result")),
                                details.get(test_id, "")))
    for match in _PYTEST_LINE.finditer(log):
        if "::" in match.group("id"):
            tests.append(TestResult(match.group("id"), _outcome(match.group("result"))))
    return TestResults(FROM_LOG, False, tests) if tests else None


def collect(verification: dict[str, Any], log: str) -> TestResults:
    return from_report(verification) or from_log(log) or TestResults(NONE, False)
