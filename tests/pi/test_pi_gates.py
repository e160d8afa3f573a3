"""The pi engine's gates, fail-closed, through the users' command on the real admitted pi: no
admission, a changed store (unadmitted digest), a model the policy does not admit, a missing
credential. Each run is `blocked` (exit 2) with its code and a signed bundle, and pi never ran.
Last, on a live endpoint it does run: the operator's key it writes out is named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pi_helpers import (
    FAKE_KEY,
    REPO_ROOT,
    AdmittedPi,
    assert_blocked,
    harness_copy,
    live_model_table,
    pi_env,
    run_pi,
)

PACKAGE = "@mariozechner/pi-coding-agent"
HARNESS_ROOT = REPO_ROOT / "harness"


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


def test_a_credential_pi_writes_out_is_named_a_disclosure(
    admitted_pi: AdmittedPi, tmp_path: Path
) -> None:
    """On a live endpoint pi holds the operator's key; its bash tool writes it into the
    workspace. The run names the disclosure (the seal also redacts it from the bundle)."""
    from cto_harness.modelserver.scripts import ScriptSet
    from cto_harness.modelserver.server import EndpointConfig, ModelEndpoint

    scripts = tmp_path / "pi-leak"
    shutil.copytree(HARNESS_ROOT / "model-scripts" / "r1-string-slugify" / "pi-happy", scripts)
    coder = scripts / "coder.toml"
    coder.write_text(coder.read_text().replace(
        "python3 -B -I -m unittest", 'echo "$ANTHROPIC_API_KEY" > notes.txt; python3 -B -I -m '
        "unittest"))
    endpoint = ModelEndpoint(EndpointConfig(mode="scripted", scripts=ScriptSet.load(scripts)))
    url = endpoint.start()
    try:
        model = ("anthropic", "claude-sonnet-4-6", url)
        root = harness_copy(tmp_path, f'\n[[models]]\nprovider = "{model[0]}"\nmodel = '
                                      f'"{model[1]}"\nbase_url = "{url}"\n')
        run = run_pi(root, pi_env(admitted_pi.home, tmp_path / "runs", model=model))
    finally:
        endpoint.stop()
    assert run.report["provider_process_started"] is True, run.stderr[-1500:]
    leaks = [a["detail"] for a in run.report["forbidden_actions_attempted"]
             if a["action"] == "credential_disclosed"]
    assert leaks == ["the value of ANTHROPIC_API_KEY appeared in workspace/notes.txt"]
    assert run.report["verdict"] == "fail"
    assert FAKE_KEY not in (run.run_dir / "patch.diff").read_text()
