"""Workspace preparation, snapshot and diff.

The snapshot lives in a private git directory outside the workspace (the provider can neither see
nor rewrite it). One pass both snapshots and hashes (see `Snapshot`): every file, ignored ones
included, goes into one pack through `git fast-import`, and the second snapshot re-reads only files
whose stat key changed since a fence, so only changed files are re-read. Comparing trees catches new,
modified, deleted, mode-changed files and symlinks; commits or history rewrites the provider makes
in the workspace's own `.git` cannot hide a change, because the working tree itself is compared.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cto_harness.contracts import ChangedFile
from cto_harness.core.globs import matches_any
from cto_harness.errors import HarnessFault
from cto_harness.git import git_env
from cto_harness.sandbox.process import run_quiet

_STATUS = {"A": "added", "D": "deleted", "M": "modified", "T": "type_changed"}


def copy_tree(source: Path, destination: Path) -> None:
    """Copy a fixture tree keeping modes and symlinks (never following them)."""
    shutil.copytree(source, destination, symlinks=True, dirs_exist_ok=False)


def init_workspace_repo(workspace: Path, remote: Path, home: Path) -> None:
    """Give the workspace a git history of its pristine state and a local bare remote only."""
    env = git_env(home)
    run_quiet(["git", "init", "-q", "--bare", str(remote)], env=env)
    run_quiet(["git", "init", "-q", "-b", "main"], cwd=workspace, env=env)
    run_quiet(["git", "add", "-A"], cwd=workspace, env=env)
    # gc.auto=0: no detached `git gc` left running (and rewriting .git) when the provider starts.
    run_quiet(["git", "-c", "gc.auto=0", "commit", "-q", "--no-gpg-sign", "-m", "fixture"],
              cwd=workspace, env=env)
    run_quiet(["git", "remote", "add", "origin", str(remote)], cwd=workspace, env=env)


# A file is read whole below this size and streamed above it.
_WHOLE_READ = 16 << 20
_CHUNK = 1 << 20
_GIT_MODE_EXEC = 0o100


@dataclass(frozen=True)
class _Entry:
    """One path of a snapshot: what the git tree and the freshness digest need of it."""

    kind: str  # "F" regular file, "L" symlink, "S" anything else (fifo, socket, device)
    executable: bool  # any exec bit (the digest's rule)
    git_mode: str  # 100644, 100755 or 120000 (git's rule: the owner's exec bit)
    sha1: str  # git blob id ("" for "S")
    sha256: str  # content digest; for a symlink its target
    stat_key: tuple[int, int, int, int, int]  # (ino, size, mtime_ns, ctime_ns, mode)
    in_tree: bool  # False under a nested .git (git never stores those)


def _fast_import_path(rel: bytes) -> bytes:
    """A path as fast-import reads it: C-quoted when it holds a quote, backslash or control."""
    if not any(b < 0x20 or b in (0x22, 0x5C) for b in rel):
        return rel
    out = bytearray(b'"')
    for b in rel:
        if b in (0x22, 0x5C):
            out += b"\\" + bytes([b])
        elif b < 0x20:
            out += f"\\{b:03o}".encode()
        else:
            out.append(b)
    return bytes(out + b'"')


@dataclass
class Snapshot:
    """Two states of one workspace, compared through a private git object store.

    One pass over the workspace both snapshots and hashes it: every file is read once, its git
    blob id and SHA-256 computed in Python while its bytes stream into `git fast-import` (one
    pack, instead of a loose object file per blob). The second snapshot re-reads only files whose
    (inode, size, mtime_ns, ctime_ns, mode) changed, and trusts an unchanged key only for files
    last changed strictly before a fence taken after the first pass (the file system's own clock:
    a write after the fence moves ctime past it, however coarse the clock is). The freshness
    digest of the second state (`digest()`, equal to `fsutil.tree_digest(workspace,
    exclude={".git"})`) comes from the same pass.
    """

    workspace: Path
    state_dir: Path
    home: Path
    before: str | None = None
    after: str | None = None
    _entries: dict[bytes, _Entry] = field(default_factory=dict, repr=False)
    _fence_ns: int = field(default=-1, repr=False)

    def _git(self, *args: str) -> str:
        env = git_env(self.home) | {
            "GIT_DIR": str(self.state_dir),
            "GIT_WORK_TREE": str(self.workspace),
            "GIT_INDEX_FILE": str(self.state_dir / "snapshot.index"),
        }
        return run_quiet(["git", *args], cwd=self.workspace, env=env, timeout=600).stdout

    def _scan(self, ref: str, previous: dict[bytes, _Entry]) -> str:
        """Walk, hash and store the workspace as commit `ref`; returns its tree id."""
        if not (self.state_dir / "HEAD").exists():
            run_quiet(["git", "init", "-q", "--bare", str(self.state_dir)], env=git_env(self.home))
        env = git_env(self.home) | {"GIT_DIR": str(self.state_dir)}
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(
                ["git", "-c", "core.compression=1", "fast-import", "--quiet", "--done"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, env=env,
                cwd=self.state_dir,
            )
            assert proc.stdin is not None
            entries = self._feed(ref, previous, proc.stdin, proc)
            if proc.wait() != 0:
                errors.seek(0)
                message = errors.read().decode(errors="replace")
                raise HarnessFault(f"git fast-import failed: {message}")
        # The fence: a file written now carries the file system's current (coarse) time.
        fence = self.state_dir / "fence"
        fence.write_bytes(b"")
        self._fence_ns = fence.stat().st_mtime_ns
        self._entries = entries
        return self._git("rev-parse", f"{ref}^{{tree}}").strip()

    def _feed(self, ref: str, previous: dict[bytes, _Entry], sink: IO[bytes],
              proc: subprocess.Popen[bytes]) -> dict[bytes, _Entry]:
        entries: dict[bytes, _Entry] = {}
        try:
            sink.write(f"commit {ref}\ncommitter cto-harness <cto-harness@localhost> 0 +0000\n"
                       "data 0\ndeleteall\n".encode())
            for rel, full, in_tree in _walk(os.fsencode(self.workspace)):
                entry = self._entry(full, previous.get(rel), in_tree, rel, sink)
                if entry is not None:
                    entries[rel] = entry
            sink.write(b"done\n")
            sink.close()
        except BaseException:
            with contextlib.suppress(OSError):
                sink.close()
            proc.kill()
            proc.wait()
            raise
        return entries

    def _entry(self, full: bytes, old: _Entry | None, in_tree: bool, rel: bytes,
               sink: IO[bytes]) -> _Entry | None:
        st = os.lstat(full)
        mode = st.st_mode
        quoted = _fast_import_path(rel)
        if stat.S_ISLNK(mode):
            target = os.readlink(full)
            header = b"blob %d\0" % len(target)
            sha1 = hashlib.sha1(header + target).hexdigest()
            if in_tree:
                sink.write(b"M 120000 inline %s\ndata %d\n%s\n" % (quoted, len(target), target))
            key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, mode)
            return _Entry("L", False, "120000", sha1,
                          target.decode("utf-8", "surrogateescape"), key, in_tree)
        if not stat.S_ISREG(mode):
            return _Entry("S", False, "", "", f"{stat.S_IFMT(mode):o}", (0, 0, 0, 0, mode), False)
        git_mode = "100755" if mode & _GIT_MODE_EXEC else "100644"
        executable = bool(mode & 0o111)
        if (old is not None and old.kind == "F"
                and old.stat_key == (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, mode)
                and max(st.st_mtime_ns, st.st_ctime_ns) < self._fence_ns):
            if in_tree:
                sink.write(f"M {git_mode} {old.sha1} ".encode() + quoted + b"\n")
            return old
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            # The key is read before the bytes: a write racing the read moves ctime past it.
            st = os.fstat(fd)
            key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)
            size = st.st_size
            blob = hashlib.sha1(b"blob %d\0" % size)
            sha256 = hashlib.sha256()
            if in_tree:
                sink.write(b"M %s inline %s\ndata %d\n" % (git_mode.encode(), quoted, size))
            remaining = size
            while remaining > 0:
                chunk = os.read(fd, min(remaining, _WHOLE_READ if size <= _WHOLE_READ else _CHUNK))
                if not chunk:
                    raise HarnessFault(f"{os.fsdecode(full)} shrank while it was read")
                remaining -= len(chunk)
                blob.update(chunk)
                sha256.update(chunk)
                if in_tree:
                    sink.write(chunk)
            if os.read(fd, 1):
                raise HarnessFault(f"{os.fsdecode(full)} grew while it was read")
            if in_tree:
                sink.write(b"\n")
        finally:
            os.close(fd)
        return _Entry("F", executable, git_mode, blob.hexdigest(), sha256.hexdigest(), key,
                      in_tree)

    def take_before(self) -> str:
        self.before = self._scan("refs/snapshots/before", {})
        return self.before

    def take_after(self) -> str:
        self.after = self._scan("refs/snapshots/after", self._entries)
        return self.after

    def digest(self) -> str:
        """The freshness digest of the latest snapshot: `fsutil.tree_digest` of the workspace
        without its top-level .git, from the hashes the snapshot computed."""
        assert self.before, "take a snapshot first"
        digest = hashlib.sha256()
        for rel in sorted(self._entries, key=lambda r: r.split(b"/")):
            entry = self._entries[rel]
            name = rel.decode("utf-8", "surrogateescape")
            if entry.kind == "L":
                line = f"L {name} {entry.sha256}"
            elif entry.kind == "S":
                line = f"S {name} {entry.sha256}"
            else:
                line = f"F{'x' if entry.executable else '-'} {name} {entry.sha256}"
            digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
        return digest.hexdigest()

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
                    change=kind,
                    old_mode=None if old_mode == "000000" else old_mode,
                    new_mode=None if new_mode == "000000" else new_mode,
                    symlink="120000" in (old_mode, new_mode),
                )
            )
        return changes

    def patch(self, bookkeeping_dirs: Sequence[str] = ()) -> bytes:
        """A git-style unified diff of source changes (the provider's bookkeeping folders left
        out) that `git apply` takes on the fixture."""
        assert self.before and self.after
        excludes = [f":(exclude){d}" for d in bookkeeping_dirs]
        env = git_env(self.home) | {"GIT_DIR": str(self.state_dir)}
        return run_quiet(
            ["git", "diff", "--binary", "--full-index", "--no-renames", "--no-color",
             self.before, self.after, "--", ".", *excludes],
            env=env, timeout=600,
        ).stdout.encode("utf-8", "surrogateescape")


def _walk(root: bytes) -> Iterator[tuple[bytes, bytes, bool]]:
    """(relative path, full path, belongs in a git tree) of every non-directory below `root`,
    skipping the top-level .git; entries under a nested .git are listed but kept out of trees."""
    stack: list[tuple[bytes, bytes, bool]] = [(root, b"", True)]
    while stack:
        folder, prefix, in_tree = stack.pop()
        with os.scandir(folder) as entries:
            for item in entries:
                name = item.name
                rel = prefix + name
                if prefix == b"" and name == b".git":
                    continue  # the workspace's own history: never part of a snapshot or digest
                if item.is_dir(follow_symlinks=False):
                    stack.append((item.path, rel + b"/", in_tree and name != b".git"))
                else:
                    yield rel, item.path, in_tree


def split_changes(
    changes: list[ChangedFile], allowed_paths: list[str], bookkeeping_dirs: Sequence[str] = ()
) -> tuple[list[ChangedFile], list[ChangedFile]]:
    """(source changes judged against the allowed paths, changes under the provider's own
    bookkeeping folders, e.g. Case's `.case/`)."""
    source: list[ChangedFile] = []
    bookkeeping: list[ChangedFile] = []
    for change in changes:
        if change.path.split("/", 1)[0] in bookkeeping_dirs:
            bookkeeping.append(change)
        else:
            change.allowed = matches_any(change.path, allowed_paths)
            source.append(change)
    return source, bookkeeping
