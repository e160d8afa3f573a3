"""pi test helpers: the pi policy, and what the session fixture `admitted_pi`
(tests/pi/conftest.py) yields after admitting pi once through the real npm route."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cto_harness.evidence.signing import PUBLIC_KEY
from cto_harness.evidence.verify import verify_bundle
from cto_harness.providers.npm import NpmDistribution
from cto_harness.providers.policy import default_policy_path, load_policy
from cto_harness.providers.report import ProviderReport
from cto_harness.settings import CREDENTIAL_VARIABLES

REPO_ROOT = Path(__file__).resolve().parents[1]
PI_POLICY = default_policy_path(REPO_ROOT / "harness", "pi")


class AdmittedPi(NamedTuple):
    """pi admitted once through the real npm route: its home, build report, tree digest, and the
    verified tarball the admission installed (kept in its build folder)."""

    home: Path
    report: ProviderReport
    sha256: str
    tarball: Path

    @classmethod
    def of(cls, home: Path, report: ProviderReport) -> AdmittedPi:
        return cls(home, report, report.artifact.sha256,
                   Path(report.build_dir or "") / "package.tgz")


def pi_spec() -> NpmDistribution:
    distribution = load_policy(PI_POLICY).distribution
    assert isinstance(distribution, NpmDistribution)
    return distribution


LIVE_MODEL = ("anthropic", "claude-sonnet-4-6", "http://127.0.0.1:9")
FAKE_KEY = "sk-ant-cto-harness-FAKE-pi-canary-7a3c"


@dataclass
class PiRun:
    exit_code: int
    report: dict
    run_dir: Path
    stderr: str
    home: Path  # the run's CTO_HARNESS_HOME (its signing key is there)


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
    return PiRun(done.returncode, report, Path(report["run_dir"]), done.stderr,
                 Path(env["CTO_HARNESS_HOME"]))


def assert_blocked(run: PiRun, code: str) -> None:
    """Blocked with `code` alone, pi never started, a complete bundle that verifies, and the
    operator's key nowhere in it."""
    assert run.exit_code == 2, run.stderr[-1500:]
    assert run.report["verdict"] == "blocked"
    assert [b["code"] for b in run.report["blockers"]] == [code]
    assert run.report["provider_process_started"] is False
    assert not (run.run_dir / "backend" / "stdout.log").read_text().strip()
    assert FAKE_KEY not in "".join(
        p.read_text(errors="replace") for p in run.run_dir.rglob("*") if p.is_file()
        and "private" not in p.relative_to(run.run_dir).parts)
    verify_bundle(run.run_dir, run.home / "keys" / PUBLIC_KEY)
