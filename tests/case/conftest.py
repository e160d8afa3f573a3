"""Fixtures of the Case engine's tests: stand-in variants built with real Bun through the real
build + admission route (cached per session), a temporary repository copy whose provider policy
admits a test model, and a runner for the users' command that returns the report and bundle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cto_harness.provider.build import build_provider
from cto_harness.provider.policy import load_policy
from cto_harness.settings import CREDENTIAL_VARIABLES, Settings
from standin_helpers import POLICY_PATH, REPO_ROOT, head_commit, make_standin_repo

# A recognisable fake credential: it must never appear in any bundle file.
FAKE_KEY = "sk-ant-cto-harness-FAKE-canary-4f1d2e9b7c"
TEST_MODEL = ("anthropic", "standin-model")
GATEWAY_MODEL = ("openai", "standin-gateway-model", "http://127.0.0.1:9/v1")
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def case_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's `harness/` (with `src` linked) whose policy admits test models,
    so that `harness/evals/run-case.sh` in it is the users' command against that policy."""
    root = tmp_path_factory.mktemp("case-repo")
    shutil.copytree(REPO_ROOT / "harness", root / "harness")
    (root / "src").symlink_to(REPO_ROOT / "src")
    policy = root / "harness" / "providers" / "case" / "policy.toml"
    with open(policy, "a", encoding="utf-8") as handle:
        handle.write(
            f'\n[[models]]\nprovider = "{TEST_MODEL[0]}"\nmodel = "{TEST_MODEL[1]}"\n'
            f'\n[[models]]\nprovider = "{GATEWAY_MODEL[0]}"\nmodel = "{GATEWAY_MODEL[1]}"\n'
            f'base_url = "{GATEWAY_MODEL[2]}"\n'
        )
    load_policy(policy)  # still valid
    return root


@pytest.fixture(scope="session")
def standin(admitted_standin, tmp_path_factory) -> Callable[[str], Path]:  # type: ignore[no-untyped-def]
    """`standin(scenario)`: the store path of that stand-in variant, built and admitted (once per
    session) in the same CTO_HARNESS_HOME as the normal stand-in."""
    cache: dict[str, Path] = {"normal": admitted_standin.binary}
    settings = Settings.from_env({**os.environ, "CTO_HARNESS_HOME": str(admitted_standin.home)})
    policy = load_policy(POLICY_PATH)

    def get(scenario: str) -> Path:
        if scenario not in cache:
            source = make_standin_repo(tmp_path_factory.mktemp(f"src-{scenario}"),
                                       scenario=scenario)
            report = build_provider(str(source), head_commit(source), policy, settings,
                                    progress=None)
            cache[scenario] = Path(report.artifact.store_path)
        return cache[scenario]

    return get


@dataclass
class CaseRun:
    exit_code: int
    report: dict
    run_dir: Path
    stdout: str
    stderr: str
    seconds: float


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
                   seconds)


def verify_bundle(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cto_harness", "verify", str(run_dir), "--json"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
        capture_output=True, text=True, timeout=120,
    )


def processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line or environment mentions `text` (e.g. a run dir)."""
    found = []
    needle = text.encode()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                if handle.read().rpartition(b")")[2].split()[0] == b"Z":
                    continue
            blobs = []
            for part in ("cmdline", "environ"):
                with open(f"/proc/{name}/{part}", "rb") as handle:
                    blobs.append(handle.read())
        except OSError:
            continue
        if any(needle in blob for blob in blobs):
            command = blobs[0].replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{name}: {command}")
    return found


def files_containing(root: Path, secret: str, *, skip: tuple[str, ...] = ("workspace",)) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts and rel.parts[0] in skip:
            continue
        if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes():
            hits.append(rel.as_posix())
    return hits
