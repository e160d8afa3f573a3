"""The one-line reason for a verdict, and the provider's own outcome, read from a report.

Works on the report as a plain dict (report.json parsed), so that it reads bundles of newer or
older schema versions and bundles that failed verification (whose report cannot be trusted to
match the model) alike. Callers say whether the report was verified; nothing here does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cto_harness.inert import inert

VERDICTS = ("pass", "fail", "blocked", "error")

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
        return explain_condition(failed[0], report) + extra
    if verdict == "pass":
        verification = _dict(report.get("verification"))
        conditions = len(_dict(report.get("pass_conditions")))
        return (f"all {conditions} pass conditions held; the harness ran "
                f"{verification.get('tests_ran', '?')} tests itself, all passed")
    if verdict == "error":
        return "the harness itself failed (no blocker recorded)"
    return "the report names no verdict the harness knows"


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
    said_ok = outcome in ("completed", "success", "succeeded", "passed")
    if outcome is not None and verdict == "pass" and not said_ok:
        disagreement = f"the harness says PASS but the provider's own pipeline says {outcome}"
    elif outcome is not None and verdict == "fail" and said_ok:
        disagreement = f"the provider says {outcome} but the harness's own checks failed"
    return ProviderOutcomeView(
        outcome=None if outcome is None else str(outcome),
        failed_agent=None if failed is None else str(failed),
        phases=rows, source=source, disagreement=disagreement,
    )


@dataclass(frozen=True)
class BundleCheck:
    ok: bool
    summary: str  # one line: what held, or the first failure (inert)
    checked: list[str] = field(default_factory=list)


def check_bundle(root: Path, public_key: Path | None = None) -> BundleCheck:
    """`verify_bundle` (digests, freshness, signature, baseline) that never raises: a bundle so
    malformed that checking it crashes is a failed check like any other."""
    from cto_harness.errors import BundleInvalid, SignatureInvalid
    from cto_harness.evidence.suite_signers import SignerUnknown, key_for_run
    from cto_harness.evidence.verify import verify_bundle

    try:
        # A run of a suite that ran on other nodes: the node key its suite vouches for.
        key = key_for_run(root, public_key)
        report = verify_bundle(root, key)
    except (SignerUnknown, SignatureInvalid) as exc:
        return BundleCheck(False, inert(f"signed by a key this suite does not vouch for: {exc}"))
    except BundleInvalid as exc:
        return BundleCheck(False, inert(str(exc)))
    except (OSError, ValueError, RecursionError) as exc:
        return BundleCheck(False, inert(f"the bundle could not be checked: "
                                        f"{type(exc).__name__}: {exc}"))
    checked = [
        f"{len(report.artifacts) + 1} artifacts re-hashed against artifacts.sha256",
        "report.json, freshness.json, events and trace agree on run id and nonce",
        "no artifact predates the run",
        "signature (evidence.dsse.json) checked with "
        + ("a node key that the suite's signers.dsse.json vouches for"
           if key is not None and key != public_key and key.name != "evidence-ed25519.pub"
           else "the given public key" if public_key else "this machine's harness key"),
    ]
    if (root / "baseline").is_dir():
        checked.append("the same-run baseline bundle verified the same way")
    return BundleCheck(True, "digests, freshness and signature hold", checked)
