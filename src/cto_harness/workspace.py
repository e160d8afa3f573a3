"""Workspace preparation, snapshot and diff.

The snapshot lives in a private git directory outside the workspace (the provider can neither see
nor rewrite it) with its own index: `git add -A -f` hashes the tree in C, and the second snapshot
reuses the first one's stat cache, so only changed files are re-read. Comparing trees catches new,
modified, deleted, mode-changed files and symlinks; commits or history rewrites the provider makes
in the workspace's own `.git` cannot hide a change, because the working tree itself is compared.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cto_harness.contracts import ChangedFile
from cto_harness.globs import matches_any
from cto_harness.process import run_quiet

# Provider bookkeeping (Case writes everything under .case/): listed apart from source changes.
BOOKKEEPING_DIRS = (".case",)
_STATUS = {"A": "added", "D": "deleted", "M": "modified", "T": "type_changed"}


def git_env(home: Path) -> dict[str, str]:
    """A git environment that ignores the user's and the system's configuration."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "cto-harness",
        "GIT_AUTHOR_EMAIL": "cto-harness@localhost",
        "GIT_COMMITTER_NAME": "cto-harness",
        "GIT_COMMITTER_EMAIL": "cto-harness@localhost",
        "LC_ALL": "C",
    }


def copy_tree(source: Path, destination: Path) -> None:
    """Copy a fixture tree keeping modes and symlinks (never following them)."""
    shutil.copytree(source, destination, symlinks=True, dirs_exist_ok=False)


def init_workspace_repo(workspace: Path, remote: Path, home: Path) -> None:
    """Give the workspace a git history of its pristine state and a local bare remote only."""
    env = git_env(home)
    run_quiet(["git", "init", "-q", "--bare", str(remote)], env=env)
    run_quiet(["git", "init", "-q", "-b", "main"], cwd=workspace, env=env)
    run_quiet(["git", "add", "-A"], cwd=workspace, env=env)
    run_quiet(["git", "commit", "-q", "--no-gpg-sign", "-m", "fixture"], cwd=workspace, env=env)
    run_quiet(["git", "remote", "add", "origin", str(remote)], cwd=workspace, env=env)


@dataclass
class Snapshot:
    """Two states of one workspace, compared through a private git object store."""

    workspace: Path
    state_dir: Path
    home: Path
    before: str | None = None
    after: str | None = None

    def _git(self, *args: str) -> str:
        env = git_env(self.home) | {
            "GIT_DIR": str(self.state_dir),
            "GIT_WORK_TREE": str(self.workspace),
            "GIT_INDEX_FILE": str(self.state_dir / "snapshot.index"),
        }
        return run_quiet(["git", *args], cwd=self.workspace, env=env, timeout=600).stdout

    def _tree(self) -> str:
        if not (self.state_dir / "HEAD").exists():
            run_quiet(["git", "init", "-q", "--bare", str(self.state_dir)], env=git_env(self.home))
        # -f: files the fixture's own .gitignore names are still the provider's changes.
        self._git("add", "-A", "-f", ".")
        return self._git("write-tree").strip()

    def take_before(self) -> str:
        self.before = self._tree()
        return self.before

    def take_after(self) -> str:
        self.after = self._tree()
        return self.after

    def changes(self) -> list[ChangedFile]:
        assert self.before and self.after, "take both snapshots first"
        raw = self._git("diff-tree", "-r", "-z", "--no-renames", "--raw", self.before, self.after)
        fields = raw.split("\0")
        changes: list[ChangedFile] = []
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            if not meta.startswith(":"):
                continue
            old_mode, new_mode, _old, _new, status = meta[1:].split(" ")
            kind = _STATUS.get(status, "modified")
            if kind == "modified" and old_mode != new_mode:
                kind = "mode_changed" if _old == _new else "modified"
            changes.append(
                ChangedFile(
                    path=path,
                    change=kind,  # type: ignore[arg-type]
                    old_mode=None if old_mode == "000000" else old_mode,
                    new_mode=None if new_mode == "000000" else new_mode,
                    symlink="120000" in (old_mode, new_mode),
                )
            )
        return changes

    def patch(self) -> bytes:
        """A git-style unified diff of source changes that `git apply` takes on the fixture."""
        assert self.before and self.after
        excludes = [f":(exclude){d}" for d in BOOKKEEPING_DIRS]
        env = git_env(self.home) | {"GIT_DIR": str(self.state_dir)}
        return run_quiet(
            ["git", "diff", "--binary", "--full-index", "--no-renames", "--no-color",
             self.before, self.after, "--", ".", *excludes],
            env=env, timeout=600,
        ).stdout.encode("utf-8", "surrogateescape")


def split_changes(
    changes: list[ChangedFile], allowed_paths: list[str]
) -> tuple[list[ChangedFile], list[ChangedFile]]:
    """(source changes judged against the allowed paths, provider bookkeeping)."""
    source: list[ChangedFile] = []
    bookkeeping: list[ChangedFile] = []
    for change in changes:
        if change.path.split("/", 1)[0] in BOOKKEEPING_DIRS:
            bookkeeping.append(change)
        else:
            change.allowed = matches_any(change.path, allowed_paths)
            source.append(change)
    return source, bookkeeping
