"""The workspace's `.git` after a provider ran: checked whole before the harness reads anything in
it, and read without following a single link.

A provider owns the workspace, `.git` included. It can make `.git` a symlink to another
repository's (a hidden target's, with a token in its remote URL), a `gitdir:` file pointing
anywhere, a worktree `commondir`, an object store borrowed through `alternates`, or `.git/config` a
link or a hard link. The harness never follows any of those: `.git` must be a real directory,
opened with O_NOFOLLOW; `config` a regular file with one link, opened relative to it with
O_NOFOLLOW; and what it reads is parsed by git from those bytes on stdin (`git config --file -`,
which follows no include). Anything else is reported as a problem (a forbidden action), never read.
Values that are reported have any credential in a URL masked (`redact_url`).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cto_harness.git import git_env

MAX_CONFIG_BYTES = 1 << 20
# Entries of a repository-local config that make git read or run things elsewhere.
_ESCAPING_KEYS = re.compile(r"^(include\.|includeif\.|core\.worktree$|core\.fsmonitor$|"
                            r"core\.hookspath$|core\.sshcommand$|core\.gitproxy$)", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]*@", re.IGNORECASE)
_URL_QUERY = re.compile(r"\?[^\s]*")


def redact_url(value: str) -> str:
    """A URL with its user-info (user:token@) and query masked: safe for a report."""
    return _URL_QUERY.sub("?***", _URL_USERINFO.sub(r"\g<scheme>***@", value))


@dataclass
class GitDirCheck:
    """The outcome: problems found, and the config's bytes when it was safe to read them."""

    problems: list[str] = field(default_factory=list)
    config: bytes | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def check_git_dir(workspace: Path) -> GitDirCheck:
    """Check the workspace's `.git` and read its config, following nothing."""
    result = GitDirCheck()
    dot_git = workspace / ".git"
    try:
        st = os.lstat(dot_git)
    except FileNotFoundError:
        result.problems.append(".git was removed")
        return result
    if stat.S_ISLNK(st.st_mode):
        result.problems.append(".git is a symbolic link (to another repository); not followed")
        return result
    if stat.S_ISREG(st.st_mode):
        result.problems.append(".git is a file (a gitdir pointer to another repository); "
                               "not followed")
        return result
    if not stat.S_ISDIR(st.st_mode):
        result.problems.append(".git is not a directory")
        return result
    workspace_fd = _open_dir(workspace)
    try:
        git_fd = os.open(".git", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=workspace_fd)
    except OSError as exc:
        os.close(workspace_fd)
        result.problems.append(f".git cannot be opened without following a link: {exc.strerror}")
        return result
    os.close(workspace_fd)
    try:
        for name, why in (("commondir", "a worktree's common directory elsewhere"),
                          ("gitdir", "a pointer to another repository")):
            if _exists(name, git_fd):
                result.problems.append(f".git/{name} exists ({why}); not followed")
        if _exists("objects/info/alternates", git_fd):
            result.problems.append(".git/objects/info/alternates borrows another object store")
        for name in ("HEAD", "config"):
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISLNK(os.lstat(name, dir_fd=git_fd).st_mode):
                    result.problems.append(f".git/{name} is a symbolic link; not followed")
        if result.problems:
            return result
        result.config = _read_config(git_fd, result)
    finally:
        os.close(git_fd)
    if result.config is not None:
        for key, value in config_entries(result.config, r"."):
            if _ESCAPING_KEYS.match(key):
                result.problems.append(f".git/config sets {key} = {redact_url(value)[:200]}")
    return result


def _exists(relative: str, dir_fd: int) -> bool:
    try:
        os.lstat(relative, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return False
    return True


def _read_config(git_fd: int, result: GitDirCheck) -> bytes | None:
    try:
        fd = os.open("config", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=git_fd)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        result.problems.append(f".git/config cannot be opened safely: {exc.strerror}")
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            result.problems.append(".git/config is not a regular file")
            return None
        if st.st_nlink != 1:
            result.problems.append(".git/config is a hard link to another file")
            return None
        if st.st_size > MAX_CONFIG_BYTES:
            result.problems.append(f".git/config is {st.st_size} bytes: too big to read")
            return None
        return os.read(fd, MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)


def config_entries(config: bytes, key_regexp: str, git: str = "git") -> list[tuple[str, str]]:
    """(key, value) pairs of a config file's bytes whose key matches `key_regexp`; includes are
    not followed (the bytes come on stdin)."""
    done = subprocess.run(
        [git, "config", "--file", "-", "--get-regexp", key_regexp], input=config,
        capture_output=True, timeout=60, check=False,
        env=git_env(Path(os.devnull), path=os.defpath),
    )
    entries = []
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(" ")
        entries.append((key, value))
    return entries


# --- after the run ------------------------------------------------------------------------------

SET_ASIDE = ".provider-written"
# The workspace repository's config once the run is over: what `git init` writes, nothing more.
SAFE_CONFIG = (b"[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
               b"\tlogallrefupdates = true\n")


def disarm_git_dir(workspace: Path) -> list[str]:
    """Leave the workspace's `.git` as nothing git would run code from: the operator opens this
    folder beside the bundle, and the provider wrote its config (`core.fsmonitor`, filter
    drivers, `core.pager`), its hooks and its worktree indirections. Each is set aside under
    `<name>.provider-written` (removed where that cannot be), and a plain config is written; a
    `.git` that is no folder is set aside whole. A `.git` deeper in the tree (a repository of
    the provider's own, where `git status` in that folder would read its config) is set aside
    whole, so the workspace's own is the only repository in it. Returns the names set aside;
    never raises."""
    done = _disarm_nested(workspace)
    try:
        fd = _open_dir(workspace)
    except OSError:
        return done
    try:
        with contextlib.suppress(OSError):
            mode = os.stat(".git", dir_fd=fd, follow_symlinks=False).st_mode
            if not stat.S_ISDIR(mode):
                _set_aside(workspace, fd, b".git")
                return [".git"]
            git_fd = os.open(".git", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             dir_fd=fd)
            try:
                for name in ("config", "hooks", "commondir", "gitdir"):
                    if _lexists(name, git_fd):
                        _set_aside(workspace, git_fd, b".git/" + name.encode())
                        done.append(f".git/{name}")
                config = os.open("config", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o644, dir_fd=git_fd)
                try:
                    os.write(config, SAFE_CONFIG)
                finally:
                    os.close(config)
            finally:
                os.close(git_fd)
    finally:
        os.close(fd)
    return done


def _disarm_nested(workspace: Path) -> list[str]:
    """Every `.git` below the top level set aside whole, reached without following a link."""
    from cto_harness.tree import Cursor, TreeChanged, walk

    found: list[bytes] = []

    def prune(rel: bytes) -> bool:  # never walk into a `.git`; note the nested ones
        if rel.rsplit(b"/", 1)[-1] != b".git":
            return False
        if rel != b".git":
            found.append(rel)
        return True

    done: list[str] = []
    try:
        for _entry in walk(workspace, prune=prune):
            pass
    except (OSError, TreeChanged):
        pass  # the provider has ended: nothing moves; what was listed is still set aside
    for rel in found:
        try:  # one that cannot be set aside does not keep the others
            with Cursor(workspace) as cursor:
                cursor.goto(rel.rpartition(b"/")[0].split(b"/"))
                _set_aside(workspace, cursor.fd, rel)
        except (OSError, TreeChanged):
            continue
        done.append(os.fsdecode(rel))
    return done


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _set_aside(workspace: Path, dir_fd: int, rel: bytes) -> None:
    """The entry `rel` of the workspace (its folder open as `dir_fd`) renamed to
    `<name>.provider-written`, or removed when that name is taken by something that cannot be
    replaced (a folder planted there), reached from the workspace by descriptors. The provider
    has ended: nothing races the path."""
    from cto_harness.tree import remove_at

    name = os.fsdecode(rel.rpartition(b"/")[2])
    try:
        os.rename(name, name + SET_ASIDE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        remove_at(workspace, rel)
