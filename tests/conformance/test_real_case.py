"""Conformance against the real WorkOS Case (`CTO_HARNESS_CASE_SOURCE=<checkout of workos/case>`):
built through `cto-harness provider build`, admitted, run through the users' command against the
harness's scripted model endpoint. Skips with its reason when no checkout is given (CI has no
GitHub access; Case's source is never part of this project)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cto_harness.validators.conformance import (
    CASE_ID,
    SKIP_REASON,
    expectations,
    record_then_replay,
    run_scenario,
    serve_scripted,
)
from cto_harness.validators.conformance import build_case as build_real_case

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = os.environ.get("CTO_HARNESS_CASE_SOURCE")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not SOURCE, reason=SKIP_REASON)]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("real-case-home")


@pytest.fixture(scope="module")
def built(home: Path) -> dict:
    assert SOURCE is not None
    return build_real_case(REPO_ROOT, Path(SOURCE).absolute(), home,
                           source_url=os.environ.get("CTO_HARNESS_CASE_SOURCE_URL") or None)


@pytest.fixture(scope="module")
def scenario(home: Path, built: dict):  # type: ignore[no-untyped-def]
    cache: dict = {}

    def run(name: str):  # type: ignore[no-untyped-def]
        if name not in cache:
            result = run_scenario(REPO_ROOT, home, Path(built["artifact"]["store_path"]), name,
                                  name)
            expectations(result)
            cache[name] = result
        return cache[name]

    return run


def test_built_through_the_route_at_a_recorded_pin(built: dict) -> None:
    assert built["status"] == "admitted" and built["provenance_level"] == "built"
    assert built["source"]["recorded_pin"]["kind"] in ("default", "accepted")
    assert built["source_identity"]["name"] == "case"
    assert built["binary_identity"]["markers_found"] == ["Usage: ca <command>"]


def test_happy_pass_with_case_completed_and_one_local_pull_request(scenario) -> None:  # type: ignore[no-untyped-def]
    result = scenario("happy")
    report = result.report
    assert report["verdict"] == "pass" and result.exit_code == 0, report["pass_conditions"]
    assert report["provider_outcome"]["outcome"] == "completed"
    (pull,) = report["pull_requests"]
    assert pull["verified"] and pull["url"] == f"https://pr.invalid/{CASE_ID}/pull/1"
    assert report["forbidden_actions_attempted"] == []
    assert result.left_running == [] and report["process"]["leftover_processes"] == []
    assert result.verified, result.verify_output
    assert report["model"]["endpoint_kind"] == "scripted"
    assert all(c.passed for c in result.checks), [c for c in result.checks if not c.passed]


def test_strict_closer_case_fails_and_the_report_says_so(scenario) -> None:  # type: ignore[no-untyped-def]
    result = scenario("strict-closer")
    outcome = result.report["provider_outcome"]
    assert result.report["verdict"] == "pass"
    assert (outcome["outcome"], outcome["failed_agent"]) == ("failed", "closer")
    assert all(c.passed for c in result.checks), [c for c in result.checks if not c.passed]


@pytest.mark.parametrize("name, reason", [("hostile-gh-api", "gh_api_forbidden"),
                                          ("hostile-edit-tests", "verification_failed")])
def test_hostile_scripts_fail_for_the_named_reason(scenario, name: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    result = scenario(name)
    assert result.report["verdict"] == "fail" and result.exit_code == 1
    checks = {c.name: c for c in result.checks}
    assert checks[reason].passed, checks[reason].detail
    assert all(c.passed for c in result.checks), [c for c in result.checks if not c.passed]


def test_record_then_replay_same_patch_and_verdict_offline(home: Path, built: dict,
                                                           tmp_path: Path) -> None:
    checks = record_then_replay(
        REPO_ROOT, home, Path(built["artifact"]["store_path"]), tmp_path,
        serve_scripted(REPO_ROOT, REPO_ROOT / "harness" / "model-scripts" / CASE_ID / "happy",
                       "conformance-upstream-key"))
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
