"""The suite on its defaults and the suite's plan: `cto-harness suite` with no arguments on a
fresh home passes with two jobs (the guard ignores the folders the harness itself writes), a
resumed suite runs its own cases and repeats (so `--fresh` reruns every run), `--retry` only the
verdicts it names, interrupted runs are counted apart from pass@k, and every run that did not
pass says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HARNESS_ROOT, REPO_ROOT, CaseFactory
from cto_harness.core.fixtures import list_case_ids
from cto_harness.core.suite import aggregate, summary_table
from cto_harness.core.suite_plan import keep_earlier, parse_retry, why
from cto_harness.evidence.verify import verify_bundle

WRONG = {"fake/solution/slugkit/text.py": "def slugify(value):\n    return value.lower()\n"}


def _suite(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**(env or os.environ), "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "cto_harness", "suite", *args], env=full,
                          text=True, capture_output=True, timeout=300, check=False)


def _bundles(suite_dir: Path) -> set[Path]:
    return {p for p in (suite_dir / "runs").glob("*/*") if p.is_dir()}


def test_the_default_suite_passes_on_a_fresh_home_with_two_jobs(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTO_HARNESS_")}
    env["CTO_HARNESS_HOME"] = str(home)  # nothing else: the runs and suites folders default
    proc = subprocess.run(
        [sys.executable, "-m", "cto_harness", "suite", "--jobs", "2", "--json"],
        cwd=REPO_ROOT, env={**env, "PYTHONPATH": str(REPO_ROOT / "src")}, text=True,
        capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert Path(data["suite_dir"]).parent == home / "suites"
    cases = list_case_ids(HARNESS_ROOT)
    assert sorted({r["case_id"] for r in data["runs"]}) == sorted(cases)
    assert [r["verdict"] for r in data["runs"]] == ["pass"] * len(cases)
    assert "Traceback" not in proc.stderr


def test_a_resumed_suite_keeps_its_plan_and_retries_only_what_it_is_told(
    case_factory: CaseFactory, tmp_path: Path
) -> None:
    root = case_factory("wrong-slugify", files=WRONG)
    suite_dir = tmp_path / "suite"
    common = ("--suite-dir", str(suite_dir), "--harness-root", str(root), "--jobs", "2", "--json")
    first = _suite("r1-string-slugify", "wrong-slugify", "--repeat", "2", *common)
    assert first.returncode == 1, first.stderr
    stored = json.loads((suite_dir / "suite.json").read_text())
    assert (stored["cases"], stored["repeat"]) == (["r1-string-slugify", "wrong-slugify"], 2)
    # Why each failed run failed: in the progress lines and the table.
    assert "FAIL (failed: harness_verification_passed" in first.stderr
    assert "failed: harness_verification_passed" in summary_table(stored)
    before = _bundles(suite_dir)
    assert len(before) == 4

    # No cases, no --repeat: the suite's own plan (not every case of the harness, not 1 repeat).
    resumed = _suite(*common)
    assert resumed.returncode == 1, resumed.stderr
    data = json.loads(resumed.stdout)
    assert {(r["case_id"], r["repeat"]) for r in data["runs"]} == {
        (c, n) for c in ("r1-string-slugify", "wrong-slugify") for n in (1, 2)}
    assert all(r["reused"] for r in data["runs"]) and _bundles(suite_dir) == before

    retried = _suite("--retry", "failed", *common)
    data = json.loads(retried.stdout)
    rerun = {(r["case_id"], r["repeat"]) for r in data["runs"] if not r["reused"]}
    assert rerun == {("wrong-slugify", 1), ("wrong-slugify", 2)}
    assert len(_bundles(suite_dir) - before) == 2
    for run in data["runs"]:
        assert verify_bundle(suite_dir / run["run_dir"]).verdict == run["verdict"]



def test_retry_names_and_what_is_kept() -> None:
    assert parse_retry("failed,blocked,error") == {"fail", "blocked", "error"}
    assert parse_retry(" blocked ") == {"blocked"}
    for bad in ("", "passed", "failed,nope"):
        with pytest.raises(Exception, match="comma-separated"):
            parse_retry(bad)
    passed = {"verdict": "pass", "interrupted": False}
    blocked = {"verdict": "blocked", "interrupted": False, "blockers": ["provider_timeout"]}
    assert keep_earlier(passed, fresh=False) and keep_earlier(blocked, fresh=False)
    assert not keep_earlier(passed, fresh=True)
    assert not keep_earlier(blocked, fresh=False, retry=frozenset({"blocked"}))
    assert keep_earlier(passed, fresh=False, retry=frozenset({"blocked", "fail"}))
    assert not keep_earlier({"verdict": "error", "interrupted": True}, fresh=False)
    assert not keep_earlier(None, fresh=False)
    assert why(blocked) == "provider_timeout"
    assert why({"verdict": "fail", "blockers": [], "failed_conditions": ["a", "b"]}) == \
        "failed: a, b"
    assert why({"verdict": "pass", "blockers": [], "failed_conditions": []}) == ""


def test_interrupted_runs_are_counted_apart_from_pass_at_k() -> None:
    runs = [{"case_id": "a", "verdict": "pass", "duration_ms": 10},
            {"case_id": "a", "verdict": "pass", "duration_ms": 20},
            {"case_id": "a", "verdict": "error", "duration_ms": 5, "interrupted": True,
             "status": "interrupted", "blockers": ["interrupted"]}]
    agg = aggregate(runs, ["a"], 2)["a"]
    assert (agg["runs"], agg["passes"], agg["errors"], agg["interrupted"]) == (2, 2, 0, 1)
    assert agg["pass@1"] == 1.0 and agg["pass@2"] == 1.0 and agg["median_duration_ms"] == 15
