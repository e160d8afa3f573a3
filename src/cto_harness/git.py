"""The one place a git environment is built: the harness's own git calls never read the user's or
the system's configuration, never prompt, and commit under one identity."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

IDENTITY = {
    "GIT_AUTHOR_NAME": "cto-harness",
    "GIT_AUTHOR_EMAIL": "cto-harness@localhost",
    "GIT_COMMITTER_NAME": "cto-harness",
    "GIT_COMMITTER_EMAIL": "cto-harness@localhost",
}


def git_env(home: Path | None = None, *, path: str | None = None) -> dict[str, str]:
    """A minimal environment for git: no user or system configuration, no prompt, the harness's
    commit identity, the C locale. `home` sets HOME; `path` replaces the caller's PATH."""
    env = {
        "PATH": path if path is not None else os.environ.get("PATH", os.defpath),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        **IDENTITY,
        "LC_ALL": "C",
    }
    if home is not None:
        env["HOME"] = str(home)
    return env


def user_git_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment (proxies, the user's own git configuration) for fetching a
    provider's source, with every prompt turned off: a build never waits for a password."""
    return {**environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"}


def commit_all(repo: Path, message: str, *, origin: str | None = None) -> str:
    """`git init -b main` (when needed), add everything, commit, optionally add `origin`;
    returns the new HEAD. For repositories the harness makes itself (stand-in sources)."""
    env = git_env()

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True,
                              text=True, check=True, stdin=subprocess.DEVNULL)
        return done.stdout.strip()

    if not (repo / ".git").exists():
        git("init", "--quiet", "--initial-branch=main")
    git("add", "--all")
    git("commit", "--quiet", "--no-gpg-sign", "-m", message)
    if origin is not None:
        git("remote", "add", "origin", origin)
    return git("rev-parse", "HEAD")
