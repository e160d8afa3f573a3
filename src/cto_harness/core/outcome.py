"""The provider's own outcome set beside the harness verdict, and any disagreement named.

The verdict never changes here: it is decided by the harness's own checks. This only says, in
plain words and with a code a script can test, when the provider's pipeline and the verdict
disagree — for instance Case ending `failed` at its closer while the harness's checks all pass.
"""

from __future__ import annotations

from cto_harness.contracts import ProviderOutcome, Verdict, outcome_class

PROVIDER_FAILED_HARNESS_PASSED = "provider_failed_harness_passed"
PROVIDER_COMPLETED_HARNESS_FAILED = "provider_completed_harness_failed"
PROVIDER_OUTCOME_UNKNOWN = "provider_outcome_unknown"


def judge_outcome(outcome: ProviderOutcome, verdict: Verdict) -> ProviderOutcome:
    """A copy of `outcome` with `agrees_with_verdict`, `note_code` and `note` filled in. An
    engine that names no provider pipeline (`provider` None) and stated nothing gets no note."""
    who = outcome.provider
    if outcome.outcome is None:
        if who is None:
            return outcome
        return outcome.model_copy(update={
            "note_code": PROVIDER_OUTCOME_UNKNOWN,
            "note": f"{who} left no pipeline end in its log (it did not finish, or wrote no "
                    f"log): its own outcome is unknown.",
        })
    who = who or "the provider"
    if verdict not in ("pass", "fail"):
        return outcome  # blocked or error: no verdict on the merits to compare with
    said = outcome_class(outcome.outcome)
    if said is None:
        return outcome.model_copy(update={
            "note_code": PROVIDER_OUTCOME_UNKNOWN,
            "note": f"{who} ended its pipeline with an outcome the harness does not recognise "
                    f"(shown as written): its own outcome is not compared with the verdict.",
        })
    provider_ok = said == "completed"
    update: dict[str, object] = {"agrees_with_verdict": provider_ok == (verdict == "pass")}
    if verdict == "pass" and not provider_ok:
        where = f" at its {outcome.failed_agent}" if outcome.failed_agent else ""
        update["note_code"] = PROVIDER_FAILED_HARNESS_PASSED
        update["note"] = (f"{who}'s own pipeline ended {outcome.outcome}{where}, while every "
                          f"check of the harness passed: the verdict PASS is the harness's own "
                          f"(its diff, its verification in a separate copy, its guards); "
                          f"{who}'s outcome is shown here, never trusted either way.")
    elif verdict == "fail" and provider_ok:
        update["note_code"] = PROVIDER_COMPLETED_HARNESS_FAILED
        update["note"] = (f"{who} reported its pipeline {outcome.outcome}, but the harness's own "
                          f"checks failed (see the pass conditions): the verdict is FAIL.")
    return outcome.model_copy(update=update)
