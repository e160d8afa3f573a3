"""The operator's local checkout of a provider's source, observed before and after a build
without running anything the checkout configures.

A checkout's `.git/config` is no part of the pinned commit: whoever handed over the folder wrote
it, and git runs what it names (`core.fsmonitor`; the `filter.<driver>.clean` of a path that
`.gitattributes` gives that driver) from a command as plain as `git status`, as the operator.
So git never runs under that config here:
- HEAD and the origin come from `rev-parse` and `config --get`, which run nothing;
- the status is taken through a shadow git dir of the harness's own: a minimal config, HEAD as
  the commit id, a copy of the index and of `info/exclude`, over the checkout's object store
  (read only). With no driver configured, a `filter=` attribute is inert.
A `.git` that is a link is refused, never followed; a checkout that cannot be read is
`source_unavailable`, not a traceback.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from cto_harness.errors import Blocked, BlockerCode
from cto_harness.fsutil import read_regular, tree_digest
from cto_harness.git import git_env, user_git_env
from cto_harness.providers.report import CheckoutGuard, CheckoutState
from cto_harness.sandbox.process import run_quiet

_GIT_TIMEOUT = 600
_INDEX_CAP = 1 << 30  # an index is ~100 bytes per tracked file
_EXCLUDE_CAP = 1 << 20
_STATUS = ["--no-optional-locks", "status", "--porcelain=v1", "--untracked-files=all",
           "--ignored=no", "--ignore-submodules=all"]


def observe_checkout(path: Path) -> CheckoutState:
    """What the checkout at `path` holds now (read only)."""
    try:
        git_dir = _git_dir_kind(path)
        worktree_digest = tree_digest(path, exclude=frozenset({".git"}))
        git_dir_digest = tree_digest(path / ".git") if git_dir == "folder" else None
    except OSError as exc:
        raise Blocked(BlockerCode.SOURCE_UNAVAILABLE,
                      f"the source checkout {path} cannot be read: {exc}") from exc
    code, head = _git_in_checkout(["rev-parse", "--verify", "HEAD"], path)
    return CheckoutState(
        path=str(path),
        worktree_digest=worktree_digest,
        git_dir_digest=git_dir_digest,
        head=head if code == 0 else None,
        porcelain_status=_status(path, head if code == 0 else None),
    )


def origin_url(path: Path) -> str | None:
    """The checkout's `remote.origin.url` (read by git, which runs nothing to read it)."""
    code, out = _git_in_checkout(["config", "--get", "remote.origin.url"], path)
    return out if code == 0 and out else None


def check_unchanged(before: CheckoutState) -> CheckoutGuard:
    """The checkout observed again; `source_mutated` when anything differs."""
    after = observe_checkout(Path(before.path))
    guard = CheckoutGuard(before=before, after=after, unchanged=before == after)
    if not guard.unchanged:
        changed = [
            name for name in ("worktree_digest", "git_dir_digest", "head", "porcelain_status")
            if getattr(before, name) != getattr(after, name)
        ]
        raise Blocked(
            BlockerCode.SOURCE_MUTATED,
            f"the source checkout {before.path} changed during the build ({', '.join(changed)}); "
            "nothing was admitted",
        )
    return guard


def _git_dir_kind(path: Path) -> str:
    """"folder", "file" (a worktree's `gitdir:` file) or "none"; a link is refused."""
    try:
        mode = os.lstat(path / ".git").st_mode
    except FileNotFoundError:
        return "none"
    if stat.S_ISLNK(mode):
        raise Blocked(BlockerCode.SOURCE_UNAVAILABLE,
                      f"the source checkout's .git ({path / '.git'}) is a link; give the "
                      "checkout whose .git is a folder of its own")
    return "folder" if stat.S_ISDIR(mode) else "file"


def _git_in_checkout(args: list[str], path: Path) -> tuple[int, str]:
    """git plumbing that runs no configured command, in the checkout, under the user's git
    configuration (their `safe.directory`)."""
    result = run_quiet(["git", "--no-optional-locks", "-C", str(path), *args],
                       env=user_git_env(os.environ), timeout=_GIT_TIMEOUT, check=False)
    out = (result.stdout if result.returncode == 0 else result.stderr).strip()
    return result.returncode, out


def _status(path: Path, head: str | None) -> list[str]:
    """`git status --porcelain` of the checkout, taken through a shadow git dir (module doc)."""
    code, out = _git_in_checkout(
        ["rev-parse", "--absolute-git-dir", "--git-common-dir", "--show-object-format"], path)
    lines = out.splitlines()
    if code != 0 or len(lines) != 3:
        return [f"error: {out}"]
    git_dir = Path(lines[0])
    common = Path(lines[1]) if os.path.isabs(lines[1]) else path / lines[1]
    with tempfile.TemporaryDirectory(prefix="cto-harness-status-") as tmp:
        shadow = Path(tmp)
        (shadow / "refs").mkdir()
        (shadow / "objects").mkdir()
        (shadow / "info").mkdir()
        (shadow / "config").write_text(
            "[core]\n\trepositoryformatversion = 1\n\tbare = false\n"
            f"[extensions]\n\tobjectformat = {lines[2]}\n", encoding="utf-8")
        (shadow / "HEAD").write_text(f"{head}\n" if head else "ref: refs/heads/unborn\n",
                                     encoding="utf-8")
        env = {**git_env(shadow), "GIT_DIR": str(shadow), "GIT_WORK_TREE": str(path),
               "GIT_OBJECT_DIRECTORY": str(common / "objects")}
        for name, cap, target in (("index", _INDEX_CAP, "index"),
                                  ("info/exclude", _EXCLUDE_CAP, "info/exclude")):
            with contextlib.suppress(FileNotFoundError):
                try:
                    data = read_regular(git_dir / name, cap)
                except OSError as exc:
                    return [f"error: {name}: {exc.strerror or exc}"]
                (shadow / target).write_bytes(data)
                # The same time as the original: git's racy-entry test compares with it.
                info = os.stat(git_dir / name)
                os.utime(shadow / target, ns=(info.st_atime_ns, info.st_mtime_ns))
        result = run_quiet(["git", *_STATUS], cwd=path, env=env, timeout=_GIT_TIMEOUT,
                           check=False)
    if result.returncode != 0:
        return [f"error: {result.stderr.strip()}"]
    return result.stdout.splitlines()
