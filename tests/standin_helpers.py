"""Helpers to make git repositories of the stand-in provider source (`tests/standin/`).

Each variant is a real repository built through the real build route: a *scenario* is compiled
into the binary (`src/scenario.ts`), and `mutate` may change anything else (the build scripts,
`package.json`) before the commit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cto_harness.git import commit_all, git_env
from cto_harness.providers.policy import AcceptedPin, ProviderPolicy, load_policy
from cto_harness.providers.registry import AdmissionRecord
from cto_harness.settings import Settings

STANDIN_DIR = Path(__file__).resolve().parent / "standin"
REPO_ROOT = Path(__file__).resolve().parents[1]
POLICY_PATH = REPO_ROOT / "harness" / "providers" / "case" / "policy.toml"
POLICY_SOURCE_URL = "https://github.com/workos/case.git"
POLICY_PIN = "7959ac917cdeb0983b4aaa20bb9f42021747fed8"

def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], env=git_env(), capture_output=True, text=True, check=True,
    )
    return result.stdout.strip()


def head_commit(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


def update_package_json(repo: Path, **changes: Any) -> None:
    """Set top-level keys of the stand-in's package.json (a value of None removes the key)."""
    path = repo / "package.json"
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data, indent=2) + "\n")


def set_script(repo: Path, name: str, command: str | None) -> None:
    path = repo / "package.json"
    data = json.loads(path.read_text())
    if command is None:
        data["scripts"].pop(name, None)
    else:
        data["scripts"][name] = command
    path.write_text(json.dumps(data, indent=2) + "\n")


def make_standin_repo(
    tmp_path: Path,
    *,
    scenario: str = "normal",
    mutate: Callable[[Path], None] | None = None,
    origin: str | None = POLICY_SOURCE_URL,
) -> Path:
    """Copy the stand-in into a new directory under `tmp_path`, compile `scenario` in, apply
    `mutate`, `git init` + commit, set `origin` (default: the policy's URL); return the path."""
    base = tmp_path / f"standin-{scenario}"
    repo, n = base, 1
    while repo.exists():
        n += 1
        repo = base.with_name(f"{base.name}-{n}")
    shutil.copytree(STANDIN_DIR, repo, ignore=shutil.ignore_patterns("node_modules", "dist"))
    (repo / "src" / "scenario.ts").write_text(
        "// Which behaviour this build of the stand-in has. Tests overwrite this file and commit.\n"
        f"export const SCENARIO: string = {json.dumps(scenario)};\n"
    )
    if mutate is not None:
        mutate(repo)
    commit_all(repo, f"stand-in ({scenario})", origin=origin)
    return repo


STANDIN_PIN_REASON = "a cto-harness test stand-in, built from a temporary repository"


def policy_accepting(*commits: str, base: Path = POLICY_PATH) -> ProviderPolicy:
    """The policy at `base` with `commits` recorded as accepted pins (a stand-in's commit is not
    the policy's pin; pins are recorded, never taken from `--commit` alone)."""
    policy = load_policy(base)
    extra = [AcceptedPin(commit=c, reason=STANDIN_PIN_REASON)
             for c in dict.fromkeys(commits) if policy.recorded_pin(c) is None]
    return policy.model_copy(update={"accepted_pins": [*policy.accepted_pins, *extra]})


def write_policy_accepting(path: Path, *commits: str, base: Path = POLICY_PATH) -> Path:
    """A policy file at `path`: `base` plus `[[accepted_pins]]` for `commits`."""
    text = base.read_text(encoding="utf-8")
    for commit in commits:
        text += f'\n[[accepted_pins]]\ncommit = "{commit}"\nreason = "{STANDIN_PIN_REASON}"\n'
    path.write_text(text, encoding="utf-8")
    load_policy(path)  # still valid
    return path


def accept_pin(policy_path: Path, commit: str) -> None:
    """Record `commit` as an accepted pin in the policy file at `policy_path` (a run counts an
    admission only under a policy that records its pin), unless it already does."""
    if load_policy(policy_path).recorded_pin(commit) is not None:
        return
    text = policy_path.read_text(encoding="utf-8")
    text += f'\n[[accepted_pins]]\ncommit = "{commit}"\nreason = "{STANDIN_PIN_REASON}"\n'
    staged = policy_path.with_name(f".{policy_path.name}.{os.getpid()}.tmp")
    staged.write_text(text, encoding="utf-8")
    os.replace(staged, policy_path)  # a run reading it meanwhile sees the old or the new
    load_policy(policy_path)  # still valid


def settings_for(home: Path) -> Settings:
    """The harness's settings with `CTO_HARNESS_HOME=home` (the rest from this environment)."""
    return Settings.from_env({**os.environ, "CTO_HARNESS_HOME": str(home)})


def run_provider_cli(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`python3 -m cto_harness provider <args>` in a child process, with
    `CTO_HARNESS_HOME=home` (`env` replaces the inherited environment when given)."""
    base = dict(os.environ if env is None else env)
    base["CTO_HARNESS_HOME"] = str(home)
    base["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT / "src"), *filter(None, [base.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "cto_harness", "provider", *args],
        env=base,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


HELP_TEXT = """Usage: ca <command> [options]

Commands:
  run  watch  create  session  status  mark-tested  mark-manual-tested  mark-reviewed
"""


def write_script_binary(path: Path, *, help_text: str = HELP_TEXT, tag: str = "") -> Path:
    """A tiny executable shell script that prints `help_text` on `--help` (distinct bytes per
    `tag`): a fast stand-in where a real compiled binary is not the point of the test."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        f"# tag: {tag}\n"
        'if [ "$1" = "--help" ]; then\n'
        "cat <<'HELP'\n"
        f"{help_text}"
        "HELP\n"
        "exit 0\n"
        "fi\n"
        "echo 'Fatal: stand-in script' >&2\n"
        "exit 1\n"
    )
    path.chmod(0o755)
    return path


def make_admission_record(sha: str, **changes: object) -> AdmissionRecord:
    """An `AdmissionRecord` with plausible fields, for seeding a registry in tests."""
    fields: dict[str, object] = {
        "sha256": sha,
        "status": "admitted",
        "provenance_level": "asserted",
        "store_path": f"/nonexistent/{sha}/ca",
        "size_bytes": 1,
        "source_url": "https://github.com/workos/case.git",
        "pin": POLICY_PIN,
        "policy_pin": POLICY_PIN,
        "admitted_at": "2026-01-01T00:00:00.000Z",
        "build_report": "/nonexistent/report.json",
        "identity_evidence_sha256": "0" * 64,
    }
    fields.update(changes)
    return AdmissionRecord.model_validate(fields)
