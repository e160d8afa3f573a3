"""The one-line reason for a verdict, the failing tests, the task and the provider's own outcome,
read from a report (and the task from the bundle's task/).

Works on the report as a plain dict (report.json parsed), so that it reads bundles of newer or
older schema versions and bundles that failed verification (whose report cannot be trusted to
match the model) alike. Callers say whether the report was verified; nothing here does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cto_harness.contracts import outcome_class
from cto_harness.evidence.layout import bundle_files
from cto_harness.inert import inert, read_json, read_text

VERDICTS = ("pass", "fail", "blocked", "error")
# Test outcomes that are not a pass (the harness's driver's names, and expected tests it never
# reported).
FAILING_OUTCOMES = frozenset({"failed", "error", "unexpected_success", "no_outcome",
                              "not_reported"})
TASK_LIMIT = 256 << 10

# What each failed pass condition means, for a person.
_CONDITION_TEXT = {
    "provider_process_started": "the provider process never started",
    "provider_exited_zero": "the provider exited with code {exit_code}",
    "no_processes_left_running": "the provider left processes running",
    "allowed_writes_passed": "changes outside the allowed paths: {disallowed}",
    "expected_changes_present": "the files the case expects to change were not changed",
    "harness_verification_passed": "the harness's own tests failed: {verification}",
    "no_forbidden_action_attempted": "a forbidden action was attempted: {forbidden}",
    "baseline_passed_same_shape": "the same-run fake baseline did not pass with the same "
                                  "evidence shape",
}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def verdict_of(report: dict[str, Any]) -> str:
    verdict = report.get("verdict")
    return verdict if verdict in VERDICTS else "unknown"


def failed_conditions(report: dict[str, Any]) -> list[str]:
    return [str(name) for name, ok in _dict(report.get("pass_conditions")).items() if ok is not True]


def explain_condition(name: str, report: dict[str, Any]) -> str:
    verification = _dict(report.get("verification"))
    disallowed = [str(c.get("path")) for c in _list(report.get("changed_files"))
                  if isinstance(c, dict) and c.get("allowed") is False]
    forbidden = [str(f.get("action")) for f in _list(report.get("forbidden_actions_attempted"))
                 if isinstance(f, dict)]
    template = _CONDITION_TEXT.get(name, f"pass condition {name} did not hold")
    return template.format(
        exit_code=report.get("backend_exit_code"),
        disallowed=", ".join(disallowed[:5]) + (" …" if len(disallowed) > 5 else "") or "?",
        verification=verification.get("reason") or verification.get("status") or "?",
        forbidden=", ".join(forbidden[:3]) or "?",
    )


def failing_tests(report: dict[str, Any]) -> list[str]:
    """The ids of the tests that did not pass, as the harness's own driver reported them."""
    tests = _dict(report.get("verification")).get("tests")
    return [str(t.get("id")) for t in _list(tests)
            if isinstance(t, dict) and t.get("outcome") in FAILING_OUTCOMES]


def short_test_name(test_id: str) -> str:
    """`tests.test_text.SlugifyTest.test_digits` -> `test_digits` (pytest's `::` too)."""
    return test_id.rsplit("::", 1)[-1].rsplit(".", 1)[-1]


def one_line_reason(report: dict[str, Any]) -> str:
    """Why the harness reached its verdict, in one line."""
    verdict = verdict_of(report)
    blockers = [b for b in _list(report.get("blockers")) if isinstance(b, dict)]
    more = f" (+{len(blockers) - 1} more)" if len(blockers) > 1 else ""
    if verdict in ("blocked", "error") and blockers:
        first = blockers[0]
        return f"{first.get('code')}: {first.get('message')}{more}"
    if verdict == "fail":
        failed = failed_conditions(report)
        if not failed:
            return "a pass condition did not hold"
        extra = f" (+{len(failed) - 1} more conditions)" if len(failed) > 1 else ""
        names = [short_test_name(t) for t in failing_tests(report)]
        if failed[0] == "harness_verification_passed" and names:
            extra = f" ({', '.join(names[:3])}{', …' if len(names) > 3 else ''})" + extra
        return explain_condition(failed[0], report) + extra
    if verdict == "pass":
        verification = _dict(report.get("verification"))
        conditions = len(_dict(report.get("pass_conditions")))
        return (f"all {conditions} pass conditions held; the harness ran "
                f"{verification.get('tests_ran', '?')} tests itself, all passed")
    if verdict == "error":
        return "the harness itself failed (no blocker recorded)"
    return "the report names no verdict the harness knows"


def task_text(root: Path) -> tuple[str, list[str]]:
    """The task as the provider was given it, read from the bundle's `task/` (Case's brief `.md`;
    the `instructions` of a task JSON; else the first file), inert; and the task files' paths
    in the bundle. Nothing is followed out of the bundle."""
    folder = root / "task"
    if folder.is_symlink() or not folder.is_dir():
        return "", []
    # The files the manifest was made from (and `verify` holds it to), no other: never a
    # leftover temporary file's name, never a link.
    try:
        listed = bundle_files(root)
    except OSError:
        return "", []
    files = [rel for rel in listed if rel.startswith("task/") and (root / rel).is_file()
             and not (root / rel).is_symlink()]
    shown = [inert(f) for f in files]
    for rel in files:
        if rel.endswith(".md"):
            return read_text(root / rel, limit=TASK_LIMIT)[0], shown
    for rel in files:
        if rel.endswith(".json"):
            data = read_json(root / rel, multiline=True)
            if isinstance(data, dict):
                text = data.get("instructions") or data.get("description") or data.get("task")
                if isinstance(text, str):
                    return text.strip(), shown
    for rel in files:
        return read_text(root / rel, limit=TASK_LIMIT)[0], shown
    return "", []


@dataclass(frozen=True)
class ProviderOutcomeView:
    """What the provider said of its own run: recorded, never trusted for the verdict."""

    outcome: str | None
    failed_agent: str | None
    phases: list[tuple[str, str, str]] = field(default_factory=list)  # phase, agent, outcome
    source: str = ""
    disagreement: str | None = None


def provider_outcome(report: dict[str, Any]) -> ProviderOutcomeView | None:
    """`provider_outcome` when the report has it; else what `provider_claims` recorded of the
    provider's `pipeline_end` and phase results (older reports)."""
    raw = report.get("provider_outcome")
    if isinstance(raw, dict) and raw:
        phases = _list(raw.get("phases"))
        source = "report.json provider_outcome"
        outcome = raw.get("outcome")
        failed = raw.get("failed_agent", raw.get("failedAgent"))
    else:
        claims = _dict(report.get("provider_claims"))
        end = _dict(claims.get("pipeline_end"))
        phases = _list(claims.get("phase_results"))
        if not end and not phases:
            return None
        source = "report.json provider_claims (pipeline_end, phase results)"
        outcome = end.get("outcome")
        failed = end.get("failedAgent", end.get("failed_agent"))
    rows = [(str(p.get("phase", "?")), str(p.get("agent", "")), str(p.get("outcome", "?")))
            for p in phases if isinstance(p, dict)]
    verdict = verdict_of(report)
    disagreement = None
    said = outcome_class(outcome)
    if outcome is not None and said is None:
        disagreement = f"the provider's own pipeline ended {outcome}, an outcome the harness " \
                       f"does not recognise: not compared with the verdict"
    elif outcome is not None and verdict == "pass" and said == "failed":
        disagreement = f"the harness says PASS but the provider's own pipeline says {outcome}"
    elif outcome is not None and verdict == "fail" and said == "completed":
        disagreement = f"the provider says {outcome} but the harness's own checks failed"
    return ProviderOutcomeView(
        outcome=None if outcome is None else str(outcome),
        failed_agent=None if failed is None else str(failed),
        phases=rows, source=source, disagreement=disagreement,
    )
