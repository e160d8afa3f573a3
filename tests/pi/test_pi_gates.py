"""The pi engine's gates, fail-closed, through the users' command on the real admitted pi: no
admission, a changed store (unadmitted digest), a model the policy does not admit, a missing
credential. Each run is `blocked` (exit 2) with its code and a signed bundle, and pi never ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from pi_helpers import (
    AdmittedPi,
    assert_blocked,
    harness_copy,
    live_model_table,
    pi_env,
    run_pi,
)

PACKAGE = "@mariozechner/pi-coding-agent"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The repository's harness/ whose pi policy also admits the live test model."""
    return harness_copy(tmp_path, live_model_table())


def test_no_admitted_pi_blocks_provider_unavailable(root: Path, tmp_path: Path) -> None:
    run = run_pi(root, pi_env(tmp_path / "home", tmp_path / "runs"))
    assert_blocked(run, "provider_unavailable")
    assert "provider build --provider pi" in run.report["blockers"][0]["message"]


def test_a_changed_store_file_blocks_provider_not_admitted(
    admitted_pi: AdmittedPi, root: Path, tmp_path: Path
) -> None:
    store = Path(admitted_pi.report.artifact.store_path)
    target = store / "node_modules" / PACKAGE / "dist" / "main.js"
    mode, original = target.stat().st_mode, target.read_bytes()
    target.chmod(0o644)
    try:
        target.write_bytes(original + b"\n// changed after admission\n")
        run = run_pi(root, pi_env(admitted_pi.home, tmp_path / "runs"))
    finally:
        target.write_bytes(original)
        target.chmod(mode)
    assert_blocked(run, "provider_not_admitted")
    assert "installed tree" in run.report["blockers"][0]["message"]


def test_a_model_the_policy_does_not_admit_is_blocked(
    admitted_pi: AdmittedPi, root: Path, tmp_path: Path
) -> None:
    env = pi_env(admitted_pi.home, tmp_path / "runs",
                 model=("anthropic", "claude-sonnet-4-6", "http://127.0.0.1:10"))
    run = run_pi(root, env)
    assert_blocked(run, "model_not_admitted")
    # Admission itself had passed: the report shows the admitted install.
    assert run.report["provider"]["sha256"] == admitted_pi.sha256
    assert run.report["provider"]["provenance_level"] == "fetched"


def test_a_missing_credential_is_blocked(admitted_pi: AdmittedPi, root: Path,
                                        tmp_path: Path) -> None:
    run = run_pi(root, pi_env(admitted_pi.home, tmp_path / "runs", key=None))
    assert_blocked(run, "credentials_missing")
    assert "ANTHROPIC_API_KEY" in run.report["blockers"][0]["message"]


@pytest.mark.parametrize("admission", ["0" * 12])
def test_an_admission_that_does_not_exist_is_refused(
    admitted_pi: AdmittedPi, root: Path, tmp_path: Path, admission: str
) -> None:
    env = pi_env(admitted_pi.home, tmp_path / "runs") | {"CTO_HARNESS_PI_ADMISSION": admission}
    assert_blocked(run_pi(root, env), "provider_unavailable")


@pytest.mark.parametrize("policy", ["not toml [", "case-policy"])
def test_a_pi_policy_that_is_not_a_valid_npm_policy_is_blocked(
    tmp_path: Path, policy: str
) -> None:
    root = harness_copy(tmp_path)
    target = root / "providers" / "pi" / "policy.toml"
    # Unreadable, or a valid policy of the wrong kind (the Case policy: a source build).
    target.write_text(policy if policy != "case-policy"
                      else (root / "providers" / "case" / "policy.toml").read_text())
    run = run_pi(root, pi_env(tmp_path / "home", tmp_path / "runs"))
    assert_blocked(run, "provider_policy_invalid")
