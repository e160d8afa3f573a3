"""Workspace preparation, snapshot, diff and the size budget.

Everything the harness learns about the workspace after the provider comes from ONE walk of the
tree layer (`tree.py`: no link followed, no FIFO, socket or device opened, names as bytes,
any depth). The walk charges every entry to the size budget before any content is read, then
reads each file once into a private object store outside the workspace (see `Snapshot`). That
inventory alone gives the change list, `patch.diff`, the freshness digest and the copy that
verification runs in (made from the stored blobs): nothing is tested that the diff does not show.

Nested `.git` folders are stored like any folder (`git fast-import` takes any path), so they
show in the change list and in the patch. Special and unreadable entries cannot be stored: they
are listed as changes (always disallowed) and named at the head of `patch.diff`. Commits or
history rewrites the provider makes in the workspace's own `.git` cannot hide a change, because
the working tree itself is compared.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cto_harness.contracts import ChangedFile
from cto_harness.core.globs import matches_any
from cto_harness.errors import HarnessFault
from cto_harness.git import git_env
from cto_harness.inert import path_text
from cto_harness.sandbox.process import run_quiet
from cto_harness.tree import (
    DIR,
    FILE,
    LINK,
    PATH_MAX,
    SPECIAL_KINDS,
    UNREADABLE,
    Budget,
    ContentSource,
    Node,
    Planned,
    TreeChanged,
    open_regular,
    read_exact,
    tree_order,
    walk,
)

# The workspace's own history: charged to the size budget, never snapshotted, diffed or copied.
_OWN_HISTORY = frozenset({b".git"})


def copy_tree(source: Path, destination: Path) -> None:
    """Copy a fixture tree keeping modes and symlinks (never following them)."""
    shutil.copytree(source, destination, symlinks=True, dirs_exist_ok=False)


def init_workspace_repo(workspace: Path, remote: Path, home: Path) -> None:
    """Give the workspace a git history of its pristine state and a local bare remote only."""
    env = git_env(home)
    run_quiet(["git", "init", "-q", "--bare", str(remote)], env=env)
    run_quiet(["git", "init", "-q", "-b", "main"], cwd=workspace, env=env)
    run_quiet(["git", "add", "-A"], cwd=workspace, env=env)
    # gc.auto=0: no detached `git gc` left running (and rewriting .git) when the provider starts;
    # maintenance.auto=false: no `git maintenance run --auto` process after the commit either.
    run_quiet(["git", "-c", "gc.auto=0", "-c", "maintenance.auto=false", "commit", "-q",
               "--no-gpg-sign", "-m", "fixture"], cwd=workspace, env=env)
    run_quiet(["git", "remote", "add", "origin", str(remote)], cwd=workspace, env=env)


# A file is read whole below this size and streamed above it.
_WHOLE_READ = 16 << 20
# A file larger than this is in patch.diff as a binary patch: to diff text, git holds ~43 bytes
# a line of both sides (a 20 MB file of two-byte lines took it 434 MB; one 512 MiB file, under
# git's own binary threshold and the workspace limit, ~11 GiB). No source file is this large.
TEXT_DIFF_MAX = 8 << 20
_CHUNK = 1 << 20
_GIT_MODE_EXEC = 0o100
_SPECIAL_BITS = 0o7000
_SPECIAL_BITS_NOTE = "mode "
LINK_OUT_NOTE = ("a symlink that leads out of the workspace (absolute, or up past its root, "
                 "through other links too): never copied for the tests")
# The kernel gives up after 40 links in one path (ELOOP); so does the resolution below.
_MAX_LINK_HOPS = 40
_MAX_LINK_STEPS = 256  # path components walked to resolve one link
_REFS = {"before": "refs/snapshots/before", "after": "refs/snapshots/after"}


@dataclass(slots=True)
class Entry:
    """One path of a snapshot: the lstat the walk saw, and for stored kinds the digests."""

    node: Node
    sha1: str = ""  # git blob id (files, symlinks)
    sha256: str = ""  # content digest (files)

    @property
    def kind(self) -> str:
        return self.node.kind

    @property
    def stored(self) -> bool:
        """A kind git can hold (a file or a symlink): in the store, the patch and the copy."""
        return self.node.kind in (FILE, LINK)

    @property
    def executable(self) -> bool:
        return bool(self.node.mode & 0o111)  # any exec bit: the freshness digest's rule

    @property
    def git_mode(self) -> str:
        kind = self.node.kind
        if kind == FILE:
            return "100755" if self.node.mode & _GIT_MODE_EXEC else "100644"
        if kind == LINK:
            return "120000"
        if kind == DIR:
            return "040000"
        return f"{self.node.mode:06o}"


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
    """Two states of one workspace, seen by one walk each and kept in a private object store.

    The walk (`tree.py`) charges every entry to the size budget as it lists it, then reads
    each regular file once: its git blob id and SHA-256 are computed in Python while its bytes
    stream into `git fast-import` (one pack). The second snapshot re-reads only files whose
    (inode, size, mtime_ns, ctime_ns, mode) changed, and trusts an unchanged key only for files
    last changed strictly before a fence taken after the first pass (the file system's own
    clock: a write after the fence moves ctime past it, however coarse the clock is). The
    change list, the patch, the freshness digest (`digest()`, equal to `fsutil.tree_digest(
    workspace, exclude={".git"})`) and the verification copy (`blobs()`) all come from these
    inventories; nothing walks the workspace again.
    """

    workspace: Path
    state_dir: Path
    home: Path
    before: str | None = None
    after: str | None = None
    before_entries: dict[bytes, Entry] = field(default_factory=dict, repr=False)
    after_entries: dict[bytes, Entry] = field(default_factory=dict, repr=False)
    _fence_ns: int = field(default=-1, repr=False)
    _store_id: tuple[int, int] | None = field(default=None, repr=False)

    def _env(self) -> dict[str, str]:
        self._check_store()
        return git_env(self.home) | {"GIT_DIR": str(self.state_dir)}

    def _check_store(self) -> None:
        """The private store must still be the folder the harness made (on the weakest tier a
        provider could swap it for a link, and git would write through it)."""
        if self._store_id is None:
            return
        try:
            st = os.stat(self.state_dir, follow_symlinks=False)
        except OSError as exc:
            raise TreeChanged(b"", f"the snapshot store is gone: {exc.strerror}") from exc
        if not stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) != self._store_id:
            raise TreeChanged(b"", "the snapshot store was replaced")


    def _scan(self, ref: str, previous: dict[bytes, Entry],
              budget: Budget | None) -> dict[bytes, Entry]:
        """Walk, hash and store the workspace as commit `ref`."""
        if self._store_id is None:
            run_quiet(["git", "init", "-q", "--bare", str(self.state_dir)], env=git_env(self.home))
            st = os.stat(self.state_dir, follow_symlinks=False)
            self._store_id = (st.st_dev, st.st_ino)
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(
                # unpackLimit=0: the one pack is kept as it is (a small import was otherwise
                # unpacked again into loose objects, by one more process).
                ["git", "-c", "core.compression=1", "-c", "fastimport.unpackLimit=0",
                 "fast-import", "--quiet", "--done", "--force"],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors, env=self._env(),
                cwd=self.state_dir,
            )
            assert proc.stdin is not None
            entries = self._feed(ref, previous, proc.stdin, proc, budget)
            if proc.wait() != 0:
                errors.seek(0)
                message = errors.read().decode(errors="replace")
                raise HarnessFault(f"git fast-import failed: {message}")
        # The fence: a file written now carries the file system's current (coarse) time.
        fence = self.state_dir / "fence"
        fence.write_bytes(b"")
        self._fence_ns = fence.stat().st_mtime_ns
        return entries

    def _feed(self, ref: str, previous: dict[bytes, Entry], sink: IO[bytes],
              proc: subprocess.Popen[bytes], budget: Budget | None) -> dict[bytes, Entry]:
        entries: dict[bytes, Entry] = {}
        try:
            sink.write(f"commit {ref}\ncommitter cto-harness <cto-harness@localhost> 0 +0000\n"
                       "data 0\ndeleteall\n".encode())
            for node, dir_fd in walk(self.workspace, budget=budget, count_only=_OWN_HISTORY):
                entries[node.rel] = self._entry(node, dir_fd, previous.get(node.rel), sink)
            sink.write(b"done\n")
            sink.close()
        except BaseException:
            with contextlib.suppress(OSError):
                sink.close()
            proc.kill()
            proc.wait()
            raise
        return entries

    def _entry(self, node: Node, dir_fd: int, old: Entry | None, sink: IO[bytes]) -> Entry:
        if node.kind == LINK:
            target = node.target
            sink.write(b"M 120000 inline %s\ndata %d\n%s\n"
                       % (_fast_import_path(node.rel), len(target), target))
            return Entry(node, hashlib.sha1(b"blob %d\0" % len(target) + target).hexdigest())
        if node.kind != FILE:
            return Entry(node)  # a directory, special or unreadable entry: listed, never read
        entry = Entry(node)
        quoted = _fast_import_path(node.rel)
        if (old is not None and old.kind == FILE and old.node.stat_key == node.stat_key
                and max(node.mtime_ns, node.ctime_ns) < self._fence_ns):
            sink.write(f"M {entry.git_mode} {old.sha1} ".encode() + quoted + b"\n")
            entry.sha1, entry.sha256 = old.sha1, old.sha256
            return entry
        # The key is the listing's, taken before the bytes: a write racing the read moves
        # ctime past it, so the next snapshot reads the file again.
        fd = open_regular(dir_fd, node)
        try:
            size = node.size
            sha1 = hashlib.sha1(b"blob %d\0" % size)
            sha256 = hashlib.sha256()
            sink.write(b"M %s inline %s\ndata %d\n" % (entry.git_mode.encode(), quoted, size))

            def take(chunk: bytes) -> None:
                sha1.update(chunk)
                sha256.update(chunk)
                sink.write(chunk)

            read_exact(fd, node, take, _WHOLE_READ if size <= _WHOLE_READ else _CHUNK)
            sink.write(b"\n")
        finally:
            os.close(fd)
        entry.sha1, entry.sha256 = sha1.hexdigest(), sha256.hexdigest()
        return entry

    def take_before(self, budget: Budget | None = None) -> str:
        self.before_entries = self._scan(_REFS["before"], {}, budget)
        self.before = _REFS["before"]
        return self.before

    def take_after(self, budget: Budget | None = None) -> str:
        """The workspace after the provider. Raises BudgetExceeded (nothing past the budget
        read) or TreeChanged (something still moved the tree)."""
        self.after_entries = self._scan(_REFS["after"], self.before_entries, budget)
        self.after = _REFS["after"]
        return self.after

    @property
    def _latest(self) -> dict[bytes, Entry]:
        return self.after_entries if self.after else self.before_entries

    def digest(self) -> str:
        """The freshness digest of the latest snapshot: `fsutil.tree_digest` of the workspace
        without its top-level .git, from the hashes the snapshot computed."""
        assert self.before, "take a snapshot first"
        digest = hashlib.sha256()
        entries = self._latest
        for rel in sorted(entries, key=tree_order):
            entry = entries[rel]
            node = entry.node
            name = rel.decode("utf-8", "surrogateescape")
            if node.kind == DIR:
                continue
            if node.kind == LINK:
                line = f"L {name} {node.target.decode('utf-8', 'surrogateescape')}"
            elif node.kind == FILE:
                line = f"F{'x' if entry.executable else '-'} {name} {entry.sha256}"
            else:
                line = f"S {name} {stat.S_IFMT(node.mode):o}"
            digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
        return digest.hexdigest()

    def changes(self) -> list[ChangedFile]:
        """Every difference between the two inventories, each named with what it is."""
        assert self.before and self.after, "take both snapshots first"
        before, after = self.before_entries, self.after_entries
        changes: list[ChangedFile] = []
        root_length = len(os.fsencode(self.workspace.absolute())) + 1
        links = LinkMap(after)
        for rel in sorted(before.keys() | after.keys(), key=tree_order):
            old, new = before.get(rel), after.get(rel)
            change = _compare(old, new)
            if change is None:
                continue
            current = new or old
            assert current is not None
            changes.append(ChangedFile(
                path=path_text(rel),
                change=change,
                old_mode=old.git_mode if old else None,
                new_mode=new.git_mode if new else None,
                symlink=LINK in (old.kind if old else "", new.kind if new else ""),
                kind=current.kind,
                notes=_notes(rel, new, old, root_length)
                + ([LINK_OUT_NOTE] if new is not None and new.kind == LINK
                   and links.leaves(rel) else []),
            ))
        return changes

    def patch(self, bookkeeping_dirs: Sequence[str] = ()) -> bytes:
        """A git-style unified diff of source changes (the provider's bookkeeping folders left
        out) that `git apply` takes on the fixture, headed by comment lines naming what no
        patch can carry (special and unreadable entries; `git apply` skips text before the
        first diff)."""
        assert self.before and self.after
        excludes = [f":(exclude){d}" for d in bookkeeping_dirs]
        self._binary_attributes()
        diff = subprocess.run(
            ["git", "diff", "--binary", "--full-index", "--no-renames", "--no-color",
             self.before, self.after, "--", ".", *excludes],
            env=self._env(), stdin=subprocess.DEVNULL, capture_output=True, timeout=600,
            check=True,
        ).stdout
        unstorable = [e for e in self.after_entries.values()
                      if e.kind in SPECIAL_KINDS or e.kind == UNREADABLE]
        header = b"".join(
            f"# cto-harness: {path_text(e.node.rel)} is a {e.kind} ({e.git_mode}): not in this "
            f"patch, never copied or tested\n".encode() for e in unstorable)
        return header + diff

    def _binary_attributes(self) -> None:
        """The store's own attributes file: every file past TEXT_DIFF_MAX on either side is
        `-diff` (git's binary patch), each named by an anchored pattern with its glob
        characters escaped, C-quoted (any byte, space or quote in a name)."""
        big = sorted({rel for entries in (self.before_entries, self.after_entries)
                      for rel, entry in entries.items()
                      if entry.kind == FILE and entry.node.size > TEXT_DIFF_MAX})
        self._check_store()
        info = self.state_dir / "info"
        info.mkdir(exist_ok=True)
        (info / "attributes").write_bytes(b"".join(_attribute_pattern(rel) + b" -diff\n"
                                                   for rel in big))

    @contextlib.contextmanager
    def blobs(self) -> Iterator[ContentSource]:
        """The stored bytes of an entry, by its blob id: what the verification copy is made of,
        so that the copy holds exactly what the inventories (and the patch) hold."""
        proc = subprocess.Popen(["git", "cat-file", "--batch"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=self._env(), cwd=self.state_dir)
        assert proc.stdin is not None and proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout

        def content(item: Planned, sink: Callable[[bytes], object]) -> None:
            stdin.write(item.content.encode() + b"\n")
            stdin.flush()
            header = stdout.readline().split()
            if len(header) != 3 or header[1] != b"blob" or header[0] != item.content.encode():
                raise HarnessFault(f"the snapshot store has no blob {item.content}")
            remaining = int(header[2])
            while remaining > 0:
                chunk = stdout.read(min(remaining, _CHUNK))
                if not chunk:
                    raise HarnessFault(f"the snapshot store cut blob {item.content} short")
                remaining -= len(chunk)
                sink(chunk)
            stdout.read(1)  # the newline after each object

        try:
            yield content
        finally:
            with contextlib.suppress(OSError):
                stdin.close()
            proc.kill()
            proc.wait()


def _attribute_pattern(rel: bytes) -> bytes:
    """A gitattributes pattern matching the path `rel` alone: anchored, its glob characters
    escaped, then C-quoted (a space, quote, control or non-ASCII byte cannot end or bend it)."""
    glob = b"/" + b"".join(b"\\" + bytes([c]) if c in b"*?[\\" else bytes([c]) for c in rel)
    quoted = b"".join(b"\\" + bytes([c]) if c in b'"\\' else
                      b"\\%03o" % c if c < 0x20 or c >= 0x7F else bytes([c]) for c in glob)
    return b'"' + quoted + b'"'


def _compare(old: Entry | None, new: Entry | None) -> str | None:
    """git's change kinds, extended to every kind of entry; None when nothing changed.
    Directories are compared only by kind: a new folder shows through what it holds."""
    if old is None:
        return None if new is None or new.kind == DIR else "added"
    if new is None:
        return None if old.kind == DIR else "deleted"
    if old.kind != new.kind:
        return "type_changed"
    if old.kind == FILE:
        content = old.sha1 != new.sha1
        mode = (old.git_mode != new.git_mode
                or (old.node.mode & _SPECIAL_BITS) != (new.node.mode & _SPECIAL_BITS))
        if content:
            return "modified"
        return "mode_changed" if mode else None
    if old.kind == LINK:
        return "modified" if old.node.target != new.node.target else None
    if old.kind == DIR:
        return None
    return "modified" if (old.node.mode, old.node.size) != (new.node.mode, new.node.size) else None


class LinkMap:
    """The links of one inventory, to ask of each whether it resolves, as the kernel would
    resolve it, to a place outside the tree: an absolute target, a `..` above the root, or
    either one reached through the tree's other links (`a -> l/../..` where `l -> ../x` is
    inside on its own). A component the tree does not hold is taken as a plain name; a path of
    more than 40 links, or of more than 256 components in all, counts as leaving: the kernel
    would give up on such a maze too.

    The folders on the way to a link are numbered once (a trie of components), so resolving a
    link costs its components, never the length of every path it passes: joining and hashing
    whole paths at each step cost ~1 ms a link at 3.7 KB deep, minutes for a workspace of
    links."""

    def __init__(self, entries: Mapping[bytes, Entry]) -> None:
        self._child: dict[tuple[int, bytes], int] = {}  # (folder node, name) -> node
        self._parent: dict[int, int] = {}
        self._target: dict[int, bytes] = {}
        self._folders: dict[bytes, int] = {b"": 0}  # folder path -> node, 0 the root
        for rel, entry in entries.items():
            if entry.kind == LINK:
                folder, _, name = rel.rpartition(b"/")
                self._target[self._node(self._folder(folder), name)] = entry.node.target

    def _node(self, parent: int, name: bytes) -> int:
        node = self._child.setdefault((parent, name), len(self._child) + 1)
        self._parent[node] = parent
        return node

    def _folder(self, folder: bytes) -> int:
        """The node of `folder`, made from its nearest known ancestor down (no recursion: a
        folder chain may be deeper than Python's stack)."""
        names: list[bytes] = []
        while (known := self._folders.get(folder)) is None:
            folder, _, name = folder.rpartition(b"/")
            names.append(name)
        for name in reversed(names):
            folder = folder + b"/" + name if folder else name
            known = self._folders[folder] = self._node(known, name)
        return known

    def leaves(self, rel: bytes) -> bool:
        """Whether the link at `rel` leads out of the tree."""
        folder, _, name = rel.rpartition(b"/")
        # Where the walk is: a node, and how many names the tree does not hold below it.
        node, unknown = self._folders.get(folder), 0
        if node is None:  # a folder no link's path passes: no link can be met below it
            node, unknown = 0, folder.count(b"/") + 1
        todo = collections.deque([name])
        hops = steps = 0
        while todo:
            part = todo.popleft()
            steps += 1
            if steps > _MAX_LINK_STEPS:
                return True
            if part in (b"", b"."):
                continue
            if part == b"..":
                if unknown:
                    unknown -= 1
                elif node == 0:
                    return True
                else:
                    node = self._parent[node]
                continue
            child = None if unknown else self._child.get((node, part))
            if child is None:
                unknown += 1
            elif (target := self._target.get(child)) is None:
                node = child
            else:
                hops += 1
                if hops > _MAX_LINK_HOPS or target.startswith(b"/"):
                    return True
                todo.extendleft(reversed(target.split(b"/")))
        return False


def _notes(rel: bytes, new: Entry | None, old: Entry | None, root_length: int) -> list[str]:
    """What the report must say about an entry beyond its change kind."""
    notes: list[str] = []
    current = new or old
    assert current is not None
    parts = rel.split(b"/")
    if any(part.lower() == b".git" for part in parts):
        notes.append("inside a nested .git folder (shown in the diff and tested like any file)")
    try:
        text = rel.decode("utf-8")
    except UnicodeDecodeError:
        notes.append("name is not UTF-8 (shown escaped)")
    else:
        if not text.isprintable():
            notes.append("name holds control or invisible characters (shown escaped)")
    if root_length + len(rel) >= PATH_MAX:
        notes.append(f"path is {root_length + len(rel)} bytes, past PATH_MAX ({PATH_MAX})")
    if new is not None:
        node = new.node
        if node.kind in SPECIAL_KINDS:
            notes.append(f"special file ({node.kind}): never opened, copied or tested")
        elif node.kind == UNREADABLE:
            notes.append(f"unreadable ({node.error}): never copied or tested")
        elif node.kind == FILE and node.nlink > 1:
            notes.append(f"hard link: {node.nlink} names share this file; each counts "
                         "against the workspace limit")
        if node.kind == FILE and node.mode & _SPECIAL_BITS:
            notes.append(f"{_SPECIAL_BITS_NOTE}{stat.S_IMODE(node.mode):04o}: setuid, setgid and "
                         "sticky bits are never copied")
    return notes


# A link or file where the fixture has a directory, or a link where a verification file belongs,
# is never judged by the allowed paths alone: the harness would have to write through it.
_DIRECTORY_MODE = "040000"


def split_changes(
    changes: list[ChangedFile], allowed_paths: list[str], bookkeeping_dirs: Sequence[str] = (),
    *, verification_files: Sequence[str] = (),
) -> tuple[list[ChangedFile], list[ChangedFile]]:
    """(source changes judged against the allowed paths, changes under the provider's own
    bookkeeping folders, e.g. Case's `.case/`).

    Always disallowed, whatever the globs say: special and unreadable entries; anything but a
    directory where the fixture has a directory; a symlink at a verification file's path; a
    symlink that leads out of the workspace; a setuid, setgid or sticky bit. Links and special
    files under `.case/` are source changes, not bookkeeping."""
    verification_files = list(verification_files)
    source: list[ChangedFile] = []
    bookkeeping: list[ChangedFile] = []
    for change in changes:
        plain = change.kind in ("file", "directory")
        if change.path.split("/", 1)[0] in bookkeeping_dirs and plain:
            bookkeeping.append(change)
            continue
        change.allowed = matches_any(change.path, allowed_paths)
        if not plain and change.kind != "symlink":
            change.allowed = False
        if change.old_mode == _DIRECTORY_MODE and change.kind != "directory":
            change.allowed = False
            change.notes.append("a link or file where the fixture has a directory")
        if change.kind == "symlink" and matches_any(change.path, verification_files):
            change.allowed = False
            change.notes.append("a symlink at a verification file's path")
        if change.path.split("/", 1)[0] in bookkeeping_dirs:
            change.allowed = False
            change.notes.append("a link or special file in the provider's bookkeeping")
        if any(note.startswith(_SPECIAL_BITS_NOTE) or note == LINK_OUT_NOTE
               for note in change.notes):
            change.allowed = False
        source.append(change)
    return source, bookkeeping
