"""Every hostile provider on every isolation tier this machine has ends in its documented verdict
and outcome, with nothing left running, the bundle verifying and no secret in any artifact.
bwrap is required (not skipped) when CTO_HARNESS_REQUIRE_BWRAP=1, as CI sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hostile_suite import ATTACKS, EXPECTED, TIERS, record, run_attack, tier_available


def _skip_unless_available(tier: str) -> None:
    ok, why = tier_available(tier)
    if ok:
        return
    if tier == "bwrap" and os.environ.get("CTO_HARNESS_REQUIRE_BWRAP") == "1":
        pytest.fail(f"CTO_HARNESS_REQUIRE_BWRAP=1 but bwrap is unusable: {why}")
    pytest.skip(f"{tier} unavailable here: {why}")


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_hostile_provider(attack, tier: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    available, why = tier_available(tier)
    if not available:
        record(attack, tier, skipped=why)
    _skip_unless_available(tier)
    obs = run_attack(attack, tier, tmp_path / "world")
    record(attack, tier, obs=obs)  # before asserting: the report shows every outcome
    expected = EXPECTED[attack.name][tier]
    # A SIGKILLed harness writes no report: that attack is judged from the host alone.
    judged_by_report = expected.verdict != "killed"
    assert bool(obs.report) == judged_by_report, obs.report
    if judged_by_report:
        assert obs.report["isolation"]["tier"] == tier
    assert obs.verdict == expected.verdict, (obs.blockers, obs.evidence)
    if expected.blocker:
        assert expected.blocker in obs.blockers
    assert obs.outcome == expected.outcome, obs.evidence
    assert not obs.left_running, obs.left_running
    assert obs.verify_error is None, obs.verify_error
    assert not obs.secret_in, obs.secret_in
    if expected.outcome == "prevented":
        assert not obs.outside_changed, obs.outside_changed
    if judged_by_report:
        canary = obs.report["isolation"]["canary"]
        assert canary["ran"] and not canary["breach"]
