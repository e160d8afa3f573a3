"""Every gate of the Case engine, seen through the users' command: its blocker, its marker, exit
2, a bundle `verify` accepts, and no provider run (no task given, no Case output, no process)."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from case_helpers import FAKE_KEY, GATEWAY_MODEL, assert_sound, base_env, files_containing, run_case
from cto_harness.clock import now_iso
from cto_harness.providers.registry import AdmissionRecord, record_admission
from cto_harness.settings import Settings
from standin_helpers import POLICY_PIN

pytestmark = pytest.mark.slow


def assert_blocked(run, code: str, marker: str | None) -> dict:  # type: ignore[no-untyped-def]
    report, run_dir = run.report, run.run_dir
    assert run.exit_code == 2, (report["verdict"], report["blockers"])
    assert report["verdict"] == "blocked"
    assert [b["code"] for b in report["blockers"]] == [code]
    if marker is not None:
        text = (run_dir / "backend" / marker).read_text()
        assert text.strip() and text.count("\n") == 1
    # The provider never ran.
    assert report["case_process_started"] is False
    assert report["backend_exit_code"] is None
    assert report["command"] == []
    assert (run_dir / "backend" / "stdout.log").read_bytes() == b""
    assert (run_dir / "task" / "NOT-GIVEN.txt").is_file()
    # Nothing of the provider's in the workspace: at most the task layout the harness wrote.
    case = run_dir / "workspace" / ".case"
    written = sorted(p.relative_to(case).as_posix() for p in case.rglob("*") if p.is_file()) \
        if case.exists() else []
    assert all(w == "active" or w.startswith("tasks/active/") for w in written), written
    assert_sound(run)
    return report


@pytest.fixture
def env(case_home, standin, tmp_path):  # type: ignore[no-untyped-def]
    return base_env(case_home, tmp_path / "runs", standin("normal"))


def test_engine_not_allowed(case_repo, env) -> None:  # type: ignore[no-untyped-def]
    env["CTO_HARNESS_ALLOW_CASE"] = "0"
    report = assert_blocked(run_case(case_repo, env), "engine_not_allowed", None)
    assert report["source_admission_status"] == "not_admitted"


def test_stage_not_authorized(case_repo, env) -> None:  # type: ignore[no-untyped-def]
    env["CTO_HARNESS_CASE_STAGE"] = "3"
    report = assert_blocked(run_case(case_repo, env), "stage_not_authorized", None)
    assert report["stage"] == "3"


def test_provider_unavailable_unset(case_repo, env) -> None:  # type: ignore[no-untyped-def]
    del env["CTO_HARNESS_CASE_BIN"]
    assert_blocked(run_case(case_repo, env), "provider_unavailable", "provider-unavailable.txt")


def test_provider_unavailable_missing_file(case_repo, env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env["CTO_HARNESS_CASE_BIN"] = str(tmp_path / "nowhere" / "ca")
    assert_blocked(run_case(case_repo, env), "provider_unavailable", "provider-unavailable.txt")


def test_not_executable(case_repo, env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "ca"
    shutil.copyfile(env["CTO_HARNESS_CASE_BIN"], copy)
    copy.chmod(0o644)
    env["CTO_HARNESS_CASE_BIN"] = str(copy)
    assert_blocked(run_case(case_repo, env), "not_executable", None)


def test_provider_not_admitted_when_bytes_differ(case_repo, env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tampered = tmp_path / "ca"
    shutil.copyfile(env["CTO_HARNESS_CASE_BIN"], tampered)
    with open(tampered, "ab") as handle:
        handle.write(b"\0")
    tampered.chmod(0o755)
    env["CTO_HARNESS_CASE_BIN"] = str(tampered)
    report = assert_blocked(run_case(case_repo, env), "provider_not_admitted",
                            "provider-not-admitted.txt")
    assert report["source_admission_status"] == "not_admitted"
    assert report["provider"]["sha256"] == hashlib.sha256(tampered.read_bytes()).hexdigest()


@pytest.mark.parametrize("other", ["source_url", "kind", "pin"])
def test_an_admission_under_another_policy_does_not_admit(  # type: ignore[no-untyped-def]
        case_repo, env, tmp_path, other: str) -> None:
    """A record with status `admitted` is not enough: it must be of this harness's policy. A
    binary admitted with another `--policy` (another source, another kind) ran as admitted, and
    so did one built from a pin this policy does not record (or no longer does: revoked)."""
    copy = tmp_path / "ca"
    shutil.copyfile(env["CTO_HARNESS_CASE_BIN"], copy)
    with open(copy, "ab") as handle:
        handle.write(b"\n")  # bytes of its own, admitted only by the record below
    copy.chmod(0o755)
    settings = Settings.from_env({"CTO_HARNESS_HOME": env["CTO_HARNESS_HOME"]})
    record_admission(settings, AdmissionRecord(
        sha256=hashlib.sha256(copy.read_bytes()).hexdigest(), status="admitted",
        provenance_level="built", store_path=str(copy), size_bytes=copy.stat().st_size,
        source_url="https://evil.example/not-case.git" if other == "source_url"
        else "https://github.com/workos/case.git",
        kind="npm" if other == "kind" else "source",
        pin="0" * 40 if other == "pin" else POLICY_PIN, policy_pin=POLICY_PIN,
        admitted_at=now_iso(), build_report=str(tmp_path / "none.json"),
        identity_evidence_sha256="0" * 64,
    ))
    env["CTO_HARNESS_CASE_BIN"] = str(copy)
    report = assert_blocked(run_case(case_repo, env), "provider_not_admitted",
                            "provider-not-admitted.txt")
    message = report["blockers"][0]["message"]
    assert "not admitted under this harness's policy" in message
    assert {"source_url": "evil.example", "kind": "'npm'", "pin": "0" * 40}[other] in message


def test_identity_mismatch(case_repo, env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Admitted bytes whose `--help` is not a `ca`'s (a string-case tool, say): blocked, and the
    probe was `--help` only."""
    impostor = tmp_path / "ca"
    # The probe is confined (nothing outside its private folder is writable): the impostor
    # tells how it was called on its output, which the evidence keeps.
    impostor.write_text('#!/bin/sh\necho "CALLED WITH [$*]"\n'
                        'echo "Usage: case <string> [--to camel|snake|kebab]"\n')
    impostor.chmod(0o755)
    digest = hashlib.sha256(impostor.read_bytes()).hexdigest()
    settings = Settings.from_env({"CTO_HARNESS_HOME": env["CTO_HARNESS_HOME"]})
    record_admission(settings, AdmissionRecord(
        sha256=digest, status="admitted", provenance_level="asserted", store_path=str(impostor),
        size_bytes=impostor.stat().st_size, source_url="https://github.com/workos/case.git",
        pin=POLICY_PIN, policy_pin=POLICY_PIN, admitted_at=now_iso(),
        build_report=str(tmp_path / "none.json"), identity_evidence_sha256="0" * 64,
    ))
    env["CTO_HARNESS_CASE_BIN"] = str(impostor)
    report = assert_blocked(run_case(case_repo, env), "identity_mismatch", None)
    assert report["source_admission_status"] == "admitted"
    evidence = json.loads((report_dir := Path(report["run_dir"])).joinpath(
        "backend", "provider-identity.json").read_text())
    assert evidence["help_excerpt"].splitlines()[0] == "CALLED WITH [--help]"
    assert evidence["argv"][1:] == ["--help"] and evidence["markers_missing"]
    assert evidence["confinement"]["uid"] not in (None, 0)
    assert report_dir.is_dir()


@pytest.mark.parametrize("unset", ["CTO_HARNESS_CASE_MODEL_PROVIDER", "CTO_HARNESS_CASE_MODEL"])
def test_model_required(case_repo, env, unset) -> None:  # type: ignore[no-untyped-def]
    del env[unset]
    report = assert_blocked(run_case(case_repo, env), "model_not_admitted",
                            "provider-model-not-admitted.txt")
    assert report["source_admission_status"] == "admitted"
    assert report["provider"]["provenance_level"] == "built"


def test_model_not_in_policy(case_repo, env) -> None:  # type: ignore[no-untyped-def]
    env["CTO_HARNESS_CASE_MODEL"] = "claude-sonnet-4-6"
    report = assert_blocked(run_case(case_repo, env), "model_not_admitted",
                            "provider-model-not-admitted.txt")
    assert report["model"]["admitted"] is False


def test_base_url_not_admitted(case_repo, env) -> None:  # type: ignore[no-untyped-def]
    env["CTO_HARNESS_CASE_MODEL_BASE_URL"] = "http://127.0.0.1:8/elsewhere"
    assert_blocked(run_case(case_repo, env), "model_not_admitted",
                   "provider-model-not-admitted.txt")


def test_credentials_missing(case_repo, env) -> None:  # type: ignore[no-untyped-def]
    del env["ANTHROPIC_API_KEY"]
    env["OPENAI_API_KEY"] = FAKE_KEY  # another provider's key does not count
    report = assert_blocked(run_case(case_repo, env), "credentials_missing",
                            "credentials-missing.txt")
    assert report["model"]["admitted"] is True
    assert "ANTHROPIC_API_KEY" in report["blockers"][0]["message"]


def test_task_contract_invalid_with_case_package_above(case_repo, env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A `package.json` named `case` above the working directory: Case would read its projects
    from there. Blocked before launch, after the inputs were generated."""
    parent = tmp_path / "checkout-of-case"
    parent.mkdir()
    (parent / "package.json").write_text(json.dumps({"name": "case", "private": True}))
    env["CTO_HARNESS_RUNS_DIR"] = str(parent / "runs")
    report = assert_blocked(run_case(case_repo, env), "task_contract_invalid", None)
    assert "package.json" in report["blockers"][0]["message"]


def test_gateway_model_writes_models_json(case_repo, env, standin) -> None:  # type: ignore[no-untyped-def]
    """An admitted model with an admitted base URL runs, and only that provider's key goes in."""
    provider, model, url = GATEWAY_MODEL
    env.update({"CTO_HARNESS_CASE_MODEL_PROVIDER": provider, "CTO_HARNESS_CASE_MODEL": model,
                "CTO_HARNESS_CASE_MODEL_BASE_URL": url, "OPENAI_API_KEY": FAKE_KEY + "-openai"})
    run = run_case(case_repo, env)
    assert run.report["verdict"] == "pass", run.report["pass_conditions"]
    model_info = run.report["model"]
    assert (model_info["provider"], model_info["model"], model_info["base_url"]) == (
        provider, model, url)
    assert model_info["admitted"] is True and model_info["endpoint_kind"] == "live"
    assert model_info["endpoint"]["mode"] == "live" and model_info["endpoint"]["url"] == url
    assert model_info["endpoint"]["started_by_harness"] is False
    assert files_containing(run.run_dir, FAKE_KEY) == []
    started = json.loads((run.run_dir / "backend" / "stderr.log").read_text().splitlines()[0])
    # Inside its network namespace Case reaches the gateway through the sandbox's forwarder.
    assert started["baseUrl"] == "http://127.0.0.1:8080/v1"
    endpoint = run.report["isolation"]["endpoint"]
    assert (endpoint["url"], endpoint["mode"], endpoint["sandbox_url"]) == (
        url, "forward", "http://127.0.0.1:8080/v1")
    assert run.report["isolation"]["network"] == "endpoint"
    assert "OPENAI_API_KEY" in started["envNames"]
    assert "ANTHROPIC_API_KEY" not in started["envNames"]


def test_provider_environment_is_minimal(case_repo, env) -> None:  # type: ignore[no-untyped-def]
    env["SOME_UNRELATED_SETTING"] = "x"
    env["GITHUB_TOKEN"] = "ghp-cto-harness-fake-token"
    run = run_case(case_repo, env)
    assert run.report["verdict"] == "pass"
    started = json.loads((run.run_dir / "backend" / "stderr.log").read_text().splitlines()[0])
    assert started["baseUrl"] is None
    names = set(started["envNames"])
    assert {"ANTHROPIC_API_KEY", "HOME", "CASE_DATA_DIR", "PI_CODING_AGENT_DIR", "PATH", "LANG",
            "TMPDIR", "GIT_TERMINAL_PROMPT", "GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL"} <= names
    assert not names & {"SOME_UNRELATED_SETTING", "GITHUB_TOKEN", "CTO_HARNESS_CASE_BIN",
                        "CTO_HARNESS_HOME", "OPENAI_API_KEY", "PYTHONPATH"}
    assert not any(n.startswith("CTO_HARNESS_") for n in names)
    assert files_containing(run.run_dir, "ghp-cto-harness-fake-token") == []


def test_repository_command_without_provider_is_unavailable(env) -> None:  # type: ignore[no-untyped-def]
    """The users' command in this repository itself (its own policy, no temp copy)."""
    from standin_helpers import REPO_ROOT

    del env["CTO_HARNESS_CASE_BIN"]
    assert_blocked(run_case(REPO_ROOT, env), "provider_unavailable", "provider-unavailable.txt")


def test_ctrl_c_during_the_baseline_interrupts_the_run(  # type: ignore[no-untyped-def]
        case_repo, env) -> None:
    """Ctrl-C while the same-run fake baseline runs: the nested run takes the signal and ends
    interrupted, and so must this run, not blocked `baseline_failed` ("the fixture is
    unsound"), which a resume never reruns."""
    runs = Path(env["CTO_HARNESS_RUNS_DIR"])
    proc = subprocess.Popen(
        [str(case_repo / "harness" / "evals" / "run-case.sh"), "r1-string-slugify", "--engine",
         "case", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(runs.glob("*/baseline/workspace")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.01)  # polling for the event: the baseline's workspace appears
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    report = json.loads(out)
    assert proc.returncode == 3, err[-2000:]
    assert [b["code"] for b in report["blockers"]] == ["interrupted"], report["blockers"]
    check = subprocess.run(
        [str(case_repo / "harness" / "bin" / "cto-harness"), "verify", report["run_dir"]],
        env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
