"""The pi engine's gates, fail-closed, through the users' command on the real admitted pi: no
admission, a changed store (unadmitted digest), a model the policy does not admit, a missing
credential. Each run is `blocked` (exit 2) with its code and a signed bundle, and pi never ran."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cto_harness.settings import CREDENTIAL_VARIABLES
from pi_helpers import REPO_ROOT, AdmittedPi

PACKAGE = "@mariozechner/pi-coding-agent"
LIVE_MODEL = ("anthropic", "claude-sonnet-4-6", "http://127.0.0.1:9")
FAKE_KEY = "sk-ant-cto-harness-FAKE-pi-canary-7a3c"


@dataclass
class PiRun:
    exit_code: int
    report: dict
    run_dir: Path
    stderr: str


def harness_copy(tmp_path: Path, models: str = "") -> Path:
    """The repository's harness/ with extra `[[models]]` tables in the pi policy."""
    root = tmp_path / "harness"
    shutil.copytree(REPO_ROOT / "harness", root, symlinks=True)
    policy = root / "providers" / "pi" / "policy.toml"
    policy.write_text(policy.read_text() + models)
    return root


def live_model_table() -> str:
    provider, model, url = LIVE_MODEL
    return f'\n[[models]]\nprovider = "{provider}"\nmodel = "{model}"\nbase_url = "{url}"\n'


def pi_env(home: Path, runs: Path, *, model: tuple[str, str, str] | None = LIVE_MODEL,
           key: str | None = FAKE_KEY) -> dict[str, str]:
    credential_names = {n for names in CREDENTIAL_VARIABLES.values() for n in names}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CTO_HARNESS_") and k not in credential_names}
    env |= {"CTO_HARNESS_HOME": str(home), "CTO_HARNESS_RUNS_DIR": str(runs),
            "CTO_HARNESS_PI_TIMEOUT_SECONDS": "120",
            "PYTHONPATH": str(REPO_ROOT / "src")}
    if model is not None:
        env |= {"CTO_HARNESS_PI_MODEL_PROVIDER": model[0], "CTO_HARNESS_PI_MODEL": model[1],
                "CTO_HARNESS_PI_MODEL_BASE_URL": model[2]}
    if key is not None:
        env["ANTHROPIC_API_KEY"] = key
    return env


def run_pi(root: Path, env: dict[str, str], case_id: str = "r1-string-slugify") -> PiRun:
    done = subprocess.run(
        [sys.executable, "-m", "cto_harness", "run", case_id, "--engine", "pi", "--json",
         "--harness-root", str(root)],
        env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600,
    )
    assert done.stdout, f"no report (exit {done.returncode}): {done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    return PiRun(done.returncode, report, Path(report["run_dir"]), done.stderr)


def assert_blocked(run: PiRun, code: str) -> None:
    assert run.exit_code == 2, run.stderr[-1500:]
    assert run.report["verdict"] == "blocked"
    assert [b["code"] for b in run.report["blockers"]] == [code]
    assert run.report["provider_process_started"] is False
    assert not (run.run_dir / "backend" / "stdout.log").read_text().strip()
    assert FAKE_KEY not in "".join(
        p.read_text(errors="replace") for p in run.run_dir.rglob("*") if p.is_file()
        and "private" not in p.relative_to(run.run_dir).parts)


def test_no_admitted_pi_blocks_provider_unavailable(tmp_path: Path) -> None:
    root = harness_copy(tmp_path, live_model_table())
    run = run_pi(root, pi_env(tmp_path / "home", tmp_path / "runs"))
    assert_blocked(run, "provider_unavailable")
    assert "provider build --provider pi" in run.report["blockers"][0]["message"]


def test_a_changed_store_file_blocks_provider_not_admitted(
    admitted_pi: AdmittedPi, tmp_path: Path
) -> None:
    root = harness_copy(tmp_path, live_model_table())
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
    admitted_pi: AdmittedPi, tmp_path: Path
) -> None:
    root = harness_copy(tmp_path, live_model_table())
    env = pi_env(admitted_pi.home, tmp_path / "runs",
                 model=("anthropic", "claude-sonnet-4-6", "http://127.0.0.1:10"))
    run = run_pi(root, env)
    assert_blocked(run, "model_not_admitted")
    # Admission itself had passed: the report shows the admitted install.
    assert run.report["provider"]["sha256"] == admitted_pi.sha256
    assert run.report["provider"]["provenance_level"] == "fetched"


def test_a_missing_credential_is_blocked(admitted_pi: AdmittedPi, tmp_path: Path) -> None:
    root = harness_copy(tmp_path, live_model_table())
    run = run_pi(root, pi_env(admitted_pi.home, tmp_path / "runs", key=None))
    assert_blocked(run, "credentials_missing")
    assert "ANTHROPIC_API_KEY" in run.report["blockers"][0]["message"]


@pytest.mark.parametrize("admission", ["0" * 12])
def test_an_admission_that_does_not_exist_is_refused(
    admitted_pi: AdmittedPi, tmp_path: Path, admission: str
) -> None:
    root = harness_copy(tmp_path, live_model_table())
    env = pi_env(admitted_pi.home, tmp_path / "runs") | {"CTO_HARNESS_PI_ADMISSION": admission}
    assert_blocked(run_pi(root, env), "provider_unavailable")
