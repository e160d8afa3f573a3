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
from collections.abc import Callable
from pathlib import Path
from typing import Any

STANDIN_DIR = Path(__file__).resolve().parent / "standin"
REPO_ROOT = Path(__file__).resolve().parents[1]
POLICY_PATH = REPO_ROOT / "harness" / "providers" / "case" / "policy.toml"
POLICY_SOURCE_URL = "https://github.com/workos/case.git"

_GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "cto-harness tests",
    "GIT_AUTHOR_EMAIL": "tests@cto-harness.invalid",
    "GIT_COMMITTER_NAME": "cto-harness tests",
    "GIT_COMMITTER_EMAIL": "tests@cto-harness.invalid",
}


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args],
        env={**os.environ, **_GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
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
    git(repo, "init", "--quiet", "--initial-branch=main")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--no-gpg-sign", "-m", f"stand-in ({scenario})")
    if origin is not None:
        git(repo, "remote", "add", "origin", origin)
    return repo
