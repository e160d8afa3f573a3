"""Helpers of the Case engine's tests (fixtures are in `tests/case/conftest.py`): the users'
command, the environment it runs with, `cto-harness verify`, and /proc and bundle scans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cto_harness.settings import CREDENTIAL_VARIABLES
from cto_harness.validators.conformance import processes_mentioning
from standin_helpers import REPO_ROOT

# A recognisable fake credential: it must never appear in any bundle file.
FAKE_KEY = "sk-ant-cto-harness-FAKE-canary-4f1d2e9b7c"
TEST_MODEL = ("anthropic", "standin-model")
GATEWAY_MODEL = ("openai", "standin-gateway-model", "http://127.0.0.1:9/v1")
SHARED = REPO_ROOT.parent / "shared"


@dataclass
class CaseRun:
    exit_code: int
    report: dict
    run_dir: Path
    stdout: str
    stderr: str
    seconds: float
    env: dict[str, str]


def base_env(home: Path, runs: Path, binary: Path | None) -> dict[str, str]:
    """The caller's environment without any harness or credential variable, then a complete,
    admitted Case configuration with the planted fake key."""
    credential_names = {n for names in CREDENTIAL_VARIABLES.values() for n in names}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CTO_HARNESS_") and k not in credential_names}
    env.update({
        "CTO_HARNESS_HOME": str(home),
        "CTO_HARNESS_RUNS_DIR": str(runs),
        "CTO_HARNESS_ALLOW_CASE": "1",
        "CTO_HARNESS_CASE_STAGE": "2",
        "CTO_HARNESS_CASE_MODEL_PROVIDER": TEST_MODEL[0],
        "CTO_HARNESS_CASE_MODEL": TEST_MODEL[1],
        "ANTHROPIC_API_KEY": FAKE_KEY,
        "CTO_HARNESS_CASE_TIMEOUT_SECONDS": "60",
    })
    if binary is not None:
        env["CTO_HARNESS_CASE_BIN"] = str(binary)
    return env


def run_case(repo: Path, env: dict[str, str], case_id: str = "r1-string-slugify") -> CaseRun:
    """The users' command: harness/evals/run-case.sh <case> --engine case --json."""
    started = time.monotonic()
    done = subprocess.run(
        [str(repo / "harness" / "evals" / "run-case.sh"), case_id, "--engine", "case", "--json"],
        env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
    )
    seconds = time.monotonic() - started
    assert done.stdout, f"no report on stdout (exit {done.returncode}): {done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    return CaseRun(done.returncode, report, Path(report["run_dir"]), done.stdout, done.stderr,
                   seconds, env)


def verify_bundle(run: CaseRun) -> subprocess.CompletedProcess[str]:
    """`cto-harness verify` with the run's own home, whose key signed the bundle."""
    return subprocess.run(
        [sys.executable, "-m", "cto_harness", "verify", str(run.run_dir), "--json"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"),
             "CTO_HARNESS_HOME": run.env["CTO_HARNESS_HOME"]},
        capture_output=True, text=True, timeout=120,
    )


def files_containing(
    root: Path, secret: str, *, skip: tuple[str, ...] = ("workspace",)
) -> list[str]:
    """Files of the run directory holding `secret` (the workspace, a working folder, skipped)."""
    hits = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts and rel.parts[0] in skip:
            continue
        if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes():
            hits.append(rel.as_posix())
    return hits


def assert_sound(run: CaseRun) -> None:
    """What every Case run must leave, whatever its verdict: a bundle `cto-harness verify`
    accepts, no trace of the planted key (in the bundle or the command's output), nothing of the
    run still running, and no private folder."""
    done = verify_bundle(run)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True
    assert files_containing(run.run_dir, FAKE_KEY) == []
    assert FAKE_KEY not in run.stdout + run.stderr
    assert processes_mentioning(str(run.run_dir)) == []
    assert not (run.run_dir / "private").exists()
