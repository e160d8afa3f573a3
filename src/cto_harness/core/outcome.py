"""The provider's own outcome set beside the harness verdict, and any disagreement named.

The verdict never changes here: it is decided by the harness's own checks. This only says, in
plain words and with a code a script can test, when the provider's pipeline and the verdict
disagree — for instance Case ending `failed` at its closer while the harness's checks all pass.
"""

from __future__ import annotations

from cto_harness.contracts import ProviderPipelineOutcome

PROVIDER_FAILED_HARNESS_PASSED = "provider_failed_harness_passed"
PROVIDER_COMPLETED_HARNESS_FAILED = "provider_completed_harness_failed"
PROVIDER_OUTCOME_UNKNOWN = "provider_outcome_unknown"


def judge_outcome(
    outcome: ProviderPipelineOutcome | None, verdict: str
) -> ProviderPipelineOutcome | None:
    """A copy of `outcome` with `agrees_with_verdict`, `note_code` and `note` filled in."""
    if outcome is None:
        return None
    judged = outcome.model_copy(deep=True)
    who = outcome.provider
    if outcome.outcome == "unknown":
        judged.note_code = PROVIDER_OUTCOME_UNKNOWN
        judged.note = (f"{who} left no pipeline end in its log (it did not finish, or wrote no "
                       f"log): its own outcome is unknown.")
        return judged
    if verdict not in ("pass", "fail"):
        return judged  # blocked or error: no verdict on the merits to compare with
    provider_ok = outcome.outcome == "completed"
    judged.agrees_with_verdict = provider_ok == (verdict == "pass")
    if verdict == "pass" and not provider_ok:
        where = f" at its {outcome.failed_agent}" if outcome.failed_agent else ""
        judged.note_code = PROVIDER_FAILED_HARNESS_PASSED
        judged.note = (f"{who}'s own pipeline ended failed{where}, while every check of the "
                       f"harness passed: the verdict PASS is the harness's own (its diff, its "
                       f"verification in a separate copy, its guards); {who}'s outcome is shown "
                       f"here, never trusted either way.")
    elif verdict == "fail" and provider_ok:
        judged.note_code = PROVIDER_COMPLETED_HARNESS_FAILED
        judged.note = (f"{who} reported its pipeline completed, but the harness's own checks "
                       f"failed (see the pass conditions): the verdict is FAIL.")
    return judged
