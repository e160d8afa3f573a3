"""A real pi run (the admitted npm install, under its admitted Bun, confined) on r1-string-slugify
against the harness's scripted model endpoint, offline: the harness's own verification decides.
The happy script passes; a wrong fix that pi claims is fine fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from observer_helpers import CollectEvents
from pi_helpers import FAKE_KEY, REPO_ROOT, AdmittedPi, pi_env, run_pi

SCRIPTED = ("anthropic", "claude-sonnet-4-6")


def scripted_env(admitted: AdmittedPi, runs: Path, script: str) -> dict[str, str]:
    env = pi_env(admitted.home, runs, model=None)  # no operator key either: FAKE_KEY is set
    env |= {"CTO_HARNESS_PI_MODEL_ENDPOINT": "scripted", "CTO_HARNESS_PI_MODEL_SCRIPT": script,
            "CTO_HARNESS_PI_MODEL_PROVIDER": SCRIPTED[0], "CTO_HARNESS_PI_MODEL": SCRIPTED[1]}
    return env


def test_pi_passes_r1_against_the_scripted_endpoint(
    admitted_pi: AdmittedPi, tmp_path: Path
) -> None:
    run = run_pi(REPO_ROOT / "harness", scripted_env(admitted_pi, tmp_path / "runs", "pi-happy"))
    report = run.report
    assert run.exit_code == 0 and report["verdict"] == "pass", run.stderr[-2000:]
    assert report["engine"] == "pi" and report["provider_process_started"] is True
    assert report["provider"]["sha256"] == admitted_pi.sha256
    assert report["provider"]["provenance_level"] == "fetched"
    endpoint = report["model"]["endpoint"]
    assert report["model"]["endpoint_kind"] == "scripted" and endpoint["started_by_harness"]
    assert endpoint["script_set"] == "pi-happy" and endpoint["errors"] == []
    assert endpoint["requests"] == 4  # read, write, bash, final answer
    assert [c["path"] for c in report["changed_files"]] == ["slugkit/text.py"]
    assert report["verification"]["tests_ran"] >= 4 and report["verification"]["tests_failed"] == 0
    assert report["baseline"]["verdict"] == "pass"
    assert report["provider_outcome"]["outcome"] == "completed"
    # pi's own account, recorded: the tool calls it made.
    events = [json.loads(line)["type"] for line in
              (run.run_dir / "events.normalized.jsonl").read_text().splitlines()]
    assert events.count("provider.tool.ended") == 3
    # The operator's credential never reached pi or the bundle (the endpoint used a run key).
    assert FAKE_KEY not in (run.run_dir / "task" / "prompt.md").read_text()
    assert not any(FAKE_KEY.encode() in p.read_bytes() for p in run.run_dir.rglob("*")
                   if p.is_file() and "private" not in p.relative_to(run.run_dir).parts)
    verify = subprocess.run([sys.executable, "-m", "cto_harness", "verify", str(run.run_dir)],
                            env=scripted_env(admitted_pi, tmp_path / "runs", "pi-happy"),
                            capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_wrong_fix_pi_claims_is_fine_fails(admitted_pi: AdmittedPi, tmp_path: Path) -> None:
    run = run_pi(REPO_ROOT / "harness",
                 scripted_env(admitted_pi, tmp_path / "runs", "pi-wrong-fix"))
    report = run.report
    assert run.exit_code == 1 and report["verdict"] == "fail", run.stderr[-2000:]
    assert report["provider_outcome"]["outcome"] == "completed"  # pi said it was done
    assert report["verification"]["tests_failed"] >= 1
    assert report["model"]["endpoint"]["requests"] == 2


def test_pi_cannot_change_its_own_install_and_the_next_run_is_clean(
    admitted_pi: AdmittedPi, tmp_path: Path
) -> None:
    # pi's program is bound read-only into its sandbox (Launch.readable), so the write through
    # the run's link fails; the re-hash after the run (`installed_copy_changed`) is the backstop
    # and finds the copy unchanged.
    run = run_pi(REPO_ROOT / "harness",
                 scripted_env(admitted_pi, tmp_path / "runs", "pi-tamper-install"))
    report = run.report
    assert run.exit_code == 0 and report["verdict"] == "pass", run.stderr[-2000:]
    assert report["forbidden_actions_attempted"] == []
    # pi's own account of the write: its bash tool call ended in an error.
    ended = [e for e in map(json.loads, (run.run_dir / "backend" / "stdout.log").read_text()
                            .splitlines()) if e.get("type") == "tool_execution_end"]
    assert [(e["toolName"], e["isError"]) for e in ended] == [("write", False), ("bash", True)]
    after = run_pi(REPO_ROOT / "harness", scripted_env(admitted_pi, tmp_path / "runs", "pi-happy"))
    assert after.exit_code == 0 and after.report["verdict"] == "pass", after.stderr[-2000:]


def test_pi_tool_calls_reach_the_live_progress_as_pi_prints_them(
    admitted_pi: AdmittedPi, tmp_path: Path
) -> None:
    from cto_harness.core.run import execute_run

    seen = CollectEvents()
    result = execute_run("r1-string-slugify", "pi", harness_root=REPO_ROOT / "harness",
                         environ=scripted_env(admitted_pi, tmp_path / "runs", "pi-happy"),
                         observer=seen)
    assert result.report.verdict == "pass"
    tools = [e.data["tool"] for e in seen.events if e.type == "provider.tool.started"]
    assert tools == ["read", "write", "bash"]
    assert seen.events[-1].type == "provider.pipeline.ended"
