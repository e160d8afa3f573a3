"""The harness's one way of touching a tree a provider could have written: walk, read, copy,
remove. Every other module goes through here for workspace content.

Guarantees by construction, not one check per trick:

* **No link is ever followed.** No path string is ever handed to the kernel for workspace
  content: every step is `openat(parent_fd, name, O_NOFOLLOW | ...)` from a directory
  descriptor, so no component can be a link. One descriptor is held whatever the depth (going up
  is `openat(fd, "..")`, checked against the identity recorded on the way down), so depth is not
  limited by PATH_MAX nor by the number of open files.
* **Nothing but a regular file is ever opened.** The kind comes from lstat before any open; the
  open adds O_NOFOLLOW and O_NONBLOCK (a FIFO swapped in cannot block it) and fstat must show the
  same regular file (device, inode). FIFOs, sockets and devices are listed, never opened.
* **Bytes end to end.** Names are bytes; only `inert.path_text` turns them into text.
* **A budget before any content.** Every entry is charged as it is listed, each hard link at its
  full size plus `ENTRY_COST` (one block), so reading (and any copy made from the listing) is bounded by the
  limit the provider was given, whatever links or holes it made.
* **Stillness is checked, not assumed.** An entry that is not what the listing said when it is
  opened raises `TreeChanged`; a caller turns that into a named outcome.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

FILE, LINK, DIR = "file", "symlink", "directory"
FIFO, SOCKET, CHAR, BLOCK = "fifo", "socket", "char_device", "block_device"
UNKNOWN, UNREADABLE = "unknown", "unreadable"
SPECIAL_KINDS = frozenset({FIFO, SOCKET, CHAR, BLOCK, UNKNOWN})
# What one name costs against the budget on top of its size: one file-system block, what an
# empty file, a folder or a link takes on disk. Every entry costs the harness a create and an
# unlink or two (~1 ms here), so this also bounds the work a provider can hand the harness:
# 200,000 empty files took 204 s of harness time at 256 bytes a name; the default 1 GiB now
# holds at most 262,144 names. A path longer than that is charged its length instead: the
# harness holds every path (inventory, change list, patch), and a chain of folders makes each
# path longer than the last, so a budget of names alone let 10,000 one-byte folders cost the
# harness 100 MB of paths and 0.5 GiB of memory (quadratic in the depth).
ENTRY_COST = 4096
PATH_MAX = 4096

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20


class TreeChanged(Exception):
    """An entry was not what the listing said when the harness came to use it."""

    def __init__(self, rel: bytes, why: str) -> None:
        super().__init__(f"{rel!r}: {why}")
        self.rel = rel
        self.why = why


class BudgetExceeded(Exception):
    """The tree holds more than its budget; nothing past the budget was read."""

    def __init__(self, budget: Budget) -> None:
        super().__init__(f"{budget.used} bytes counted in {budget.entries} entries, "
                         f"over the limit of {budget.limit}")
        self.budget = budget


@dataclass
class Budget:
    """Bytes a tree may hold: each entry's apparent size (every hard link counted) plus
    ENTRY_COST or its path's length, whichever is more. Charging past `limit` raises
    BudgetExceeded."""

    limit: int
    used: int = 0
    entries: int = 0

    def charge(self, node: Node) -> None:
        self.entries += 1
        self.used += max(node.size, 0) + max(ENTRY_COST, len(node.rel))
        if self.used > self.limit:
            raise BudgetExceeded(self)


_KINDS = {stat.S_IFREG: FILE, stat.S_IFDIR: DIR, stat.S_IFLNK: LINK, stat.S_IFIFO: FIFO,
          stat.S_IFSOCK: SOCKET, stat.S_IFCHR: CHAR, stat.S_IFBLK: BLOCK}


def kind_of(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), UNKNOWN)


@dataclass(slots=True)
class Node:
    """One entry as lstat saw it. `rel` is relative to the walked root, '/'-separated bytes."""

    rel: bytes
    kind: str
    mode: int
    size: int
    nlink: int
    dev: int
    ino: int
    mtime_ns: int
    ctime_ns: int
    target: bytes = b""  # a symlink's target, as stored
    error: str = ""  # why an UNREADABLE entry could not be read
    name: bytes = b""  # the last component of `rel`

    @property
    def stat_key(self) -> tuple[int, int, int, int, int]:
        return (self.ino, self.size, self.mtime_ns, self.ctime_ns, self.mode)

    @classmethod
    def from_stat(cls, rel: bytes, st: os.stat_result) -> Node:
        return cls(rel, kind_of(st.st_mode), st.st_mode, st.st_size, st.st_nlink, st.st_dev,
                   st.st_ino, st.st_mtime_ns, st.st_ctime_ns, name=rel.rpartition(b"/")[2])


def tree_order(rel: bytes) -> bytes:
    """A sort key putting paths in tree order (a folder before what it holds, names compared
    component by component), as `rel.split(b"/")` would, in one string the size of the path:
    NUL sorts before any byte a name can hold. The split key cost ~40 bytes a component, ~20
    times the paths' own size in a tree of one-byte folder names."""
    return rel.replace(b"/", b"\0")


def _ident(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


class Cursor:
    """One open directory descriptor that moves through a tree by name only.

    `down(name)` opens a child with O_NOFOLLOW | O_DIRECTORY (a link there fails, it is never
    entered); `up()` opens ".." and checks it is the directory the cursor came from."""

    # A descriptor is forgotten before it is closed, never after: an interrupt (a signal's
    # exception lands between any two steps) may then leak one, but never closes one twice,
    # which in a threaded program could close a descriptor another thread has just opened.

    def __init__(self, root: Path | str | bytes) -> None:
        self.fd = -1
        self._trail: list[tuple[int, int]] = []
        self.parts: list[bytes] = []
        try:
            fd = os.open(root, _DIR_FLAGS)
        except OSError as exc:  # gone, or replaced by a link or a file: never entered
            raise TreeChanged(b"", f"cannot open the root: {exc.strerror}") from exc
        self._trail.append(self._take(fd, None))

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def _take(self, fd: int, expect: tuple[int, int] | None) -> tuple[int, int]:
        """Make `fd` (a directory just opened) the cursor's, closing the one it held; `fd` is
        closed instead if it is not the directory `expect` names or if anything interrupts."""
        try:
            ident = _ident(os.fstat(fd))
            if expect is not None and ident != expect:
                raise TreeChanged(self.rel, "a different directory than expected")
        except BaseException:
            os.close(fd)
            raise
        old, self.fd = self.fd, fd
        if old >= 0:
            os.close(old)
        return ident

    @property
    def rel(self) -> bytes:
        return b"/".join(self.parts)

    def down(self, name: bytes, expect: tuple[int, int] | None = None) -> None:
        rel = b"/".join([*self.parts, name])
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            raise TreeChanged(rel, f"cannot enter: {errno.errorcode.get(exc.errno or 0, exc)}"
                              ) from exc
        try:
            ident = self._take(child, expect)
        except TreeChanged:
            raise TreeChanged(rel, "a different directory than listed") from None
        self._trail.append(ident)
        self.parts.append(name)

    def up(self) -> None:
        if not self.parts:
            raise ValueError("already at the root")
        parent = os.open(b"..", _DIR_FLAGS, dir_fd=self.fd)
        try:
            self._take(parent, self._trail[-2])
        except TreeChanged:
            raise TreeChanged(self.rel, "moved while the harness walked it") from None
        self._trail.pop()
        self.parts.pop()

    def goto(self, parts: list[bytes]) -> None:
        """Move to the directory `parts` (from the root) by the shortest way."""
        here = len(self.parts)
        if len(parts) == here + 1 and parts[:here] == self.parts:  # one step down: the usual
            self.down(parts[-1])
            return
        common = 0
        while (common < len(parts) and common < len(self.parts)
               and parts[common] == self.parts[common]):
            common += 1
        while len(self.parts) > common:
            self.up()
        for name in parts[common:]:
            self.down(name)


def identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the directory at `path` itself (a link there is not one), or None."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return _ident(st) if stat.S_ISDIR(st.st_mode) else None


def _lstat(dir_fd: int, name: bytes, rel: bytes) -> Node:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        raise TreeChanged(rel, f"vanished: {exc.strerror}") from exc
    mode = st.st_mode
    kind = FILE if stat.S_ISREG(mode) else kind_of(mode)
    node = Node(rel, kind, mode, st.st_size, st.st_nlink, st.st_dev, st.st_ino,
                st.st_mtime_ns, st.st_ctime_ns, name=name)
    if kind == LINK:
        node.target = os.readlink(name, dir_fd=dir_fd)
    return node


def _names(fd: int) -> list[bytes]:
    # os.listdir(fd) decodes with surrogateescape; fsencode gives back the exact bytes.
    return sorted(os.fsencode(n) for n in os.listdir(fd))


def walk(root: Path, *, budget: Budget | None = None,
         count_only: frozenset[bytes] = frozenset(),
         prune: Callable[[bytes], bool] | None = None) -> Iterator[tuple[Node, int]]:
    """Every entry below `root` (not `root` itself) with the descriptor of its directory, valid
    until the next step. Directories come before what they hold; names sorted within one.

    Top-level names in `count_only` are charged to the budget but not yielded; entries for which
    `prune(rel)` holds are neither yielded nor entered. A directory that cannot be opened is
    yielded (again) as UNREADABLE, with nothing below it."""
    with Cursor(root) as cursor:
        # Frames: the subdirectories of each open level still to visit, with their identity.
        frames: list[list[tuple[bytes, tuple[int, int], bool]]] = []
        level = _list_level(cursor, b"", budget, count_only, False, prune)
        while True:
            pending: list[tuple[bytes, tuple[int, int], bool]] = []
            for node, hidden in level:
                if not hidden:
                    yield node, cursor.fd
                if node.kind == DIR:
                    pending.append((node.name, (node.dev, node.ino), hidden))
            pending.reverse()
            frames.append(pending)
            level = []
            while frames:
                if frames[-1]:
                    name, ident, hidden = frames[-1].pop()
                    prefix = cursor.rel + b"/" + name if cursor.parts else name
                    try:
                        cursor.down(name, ident)
                    except TreeChanged:
                        unreadable = _unreadable(cursor, name, prefix)
                        if unreadable is None:
                            raise
                        if not hidden:
                            yield unreadable, cursor.fd
                        continue
                    level = _list_level(cursor, prefix + b"/", budget, count_only, hidden, prune)
                    break
                frames.pop()
                if frames:
                    cursor.up()
            if not frames:
                return


def _unreadable(cursor: Cursor, name: bytes, rel: bytes) -> Node | None:
    """A directory that exists but cannot be opened (permissions): named, never entered."""
    try:
        st = os.stat(name, dir_fd=cursor.fd, follow_symlinks=False)
        fd = os.open(name, _DIR_FLAGS, dir_fd=cursor.fd)
    except PermissionError as exc:
        node = Node.from_stat(rel, st)
        node.kind, node.error = UNREADABLE, exc.strerror or "permission denied"
        return node
    except OSError:
        return None
    os.close(fd)
    return None


def _list_level(cursor: Cursor, prefix: bytes, budget: Budget | None,
                count_only: frozenset[bytes], hidden: bool,
                prune: Callable[[bytes], bool] | None) -> list[tuple[Node, bool]]:
    out = []
    for name in _names(cursor.fd):
        if prune is not None and prune(prefix + name):
            continue
        node = _lstat(cursor.fd, name, prefix + name)
        if budget is not None:
            budget.charge(node)
        out.append((node, hidden or (not prefix and name in count_only)))
    return out


def open_regular(dir_fd: int, node: Node) -> int:
    """Open the regular file `node` in `dir_fd` for reading: never a link, never a FIFO, socket
    or device, and the same file (device, inode) the listing saw."""
    try:
        fd = os.open(node.name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise TreeChanged(node.rel, f"cannot open: {exc.strerror}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_ino != node.ino or st.st_dev != node.dev:
        os.close(fd)
        raise TreeChanged(node.rel, "not the regular file that was listed")
    return fd


def read_exact(fd: int, node: Node, sink: Callable[[bytes], object], chunk: int = _CHUNK) -> None:
    """Feed exactly `node.size` bytes of `fd` to `sink`; a file that shrank or grew since it was
    listed raises TreeChanged (its listed size is what the budget charged)."""
    remaining = node.size
    while remaining > 0:
        data = os.read(fd, min(remaining, chunk))
        if not data:
            raise TreeChanged(node.rel, "shrank while it was read")
        remaining -= len(data)
        sink(data)
    if os.read(fd, 1):
        raise TreeChanged(node.rel, "grew while it was read")


# --- single files at a known place -------------------------------------------------------------


def _split(rel: bytes | str) -> list[bytes]:
    raw = os.fsencode(rel)
    parts = [p for p in raw.split(b"/") if p not in (b"", b".")]
    if b".." in parts:
        raise ValueError(f"{raw!r} climbs out of its root")
    return parts


def open_file(root: Path, rel: bytes | str) -> int | None:
    """A descriptor of the regular file `root/rel`, reached without following any link below
    `root`; None when it is absent, a link, or anything but a regular file. The caller closes it."""
    parts = _split(rel)
    if not parts:
        return None
    try:
        with Cursor(root) as cursor:
            for name in parts[:-1]:
                cursor.down(name)
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=cursor.fd)
    except (OSError, TreeChanged):
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def read_file(root: Path, rel: bytes | str, cap: int) -> bytes | None:
    """The first `cap` bytes of the regular file `root/rel`, reached without following any link
    below `root`; None when it is absent, a link, or anything but a regular file."""
    fd = open_file(root, rel)
    if fd is None:
        return None
    try:
        chunks, left = [], cap
        while left > 0 and (data := os.read(fd, min(left, _CHUNK))):
            chunks.append(data)
            left -= len(data)
        return b"".join(chunks)
    finally:
        os.close(fd)


def files_in(root: Path, rel: bytes | str,
             keep: Callable[[bytes], bool] | None = None) -> list[bytes]:
    """Names of the regular files directly inside the folder `root/rel`, reached without
    following any link; [] when it is absent or not a folder. `keep` picks names before any is
    looked at (a folder of a million other entries costs one listing, not a million stats)."""
    try:
        with Cursor(root) as cursor:
            for name in _split(rel):
                cursor.down(name)
            names = [n for n in _names(cursor.fd) if keep is None or keep(n)]
            return [n for n in names if stat.S_ISREG(
                os.stat(n, dir_fd=cursor.fd, follow_symlinks=False).st_mode)]
    except (OSError, TreeChanged):
        return []


def iter_files(root: Path, *, cap: int, count_only: frozenset[bytes] = frozenset(),
               budget: Budget | None = None) -> Iterator[tuple[bytes, bytes]]:
    """(relative path, first `cap` bytes) of every regular file below `root`."""
    for node, dir_fd in walk(root, budget=budget, count_only=count_only):
        if node.kind != FILE:
            continue
        try:
            fd = open_regular(dir_fd, node)
        except TreeChanged:
            continue
        try:
            yield node.rel, os.read(fd, cap)
        finally:
            os.close(fd)


# --- making and removing trees -----------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One entry of a tree to create: a directory, a regular file or a symlink."""

    rel: bytes
    kind: str
    executable: bool = False
    target: bytes = b""  # symlink target
    content: str = ""  # key handed to the content source (a blob id)
    size: int = 0

    @property
    def parts(self) -> list[bytes]:
        return self.rel.split(b"/")


ContentSource = Callable[[Planned, Callable[[bytes], object]], None]


@dataclass
class Made:
    files: int = 0
    links: int = 0
    directories: int = 0
    bytes_written: int = 0
    skipped: list[bytes] = field(default_factory=list)


def materialize(destination: Path, plan: Iterable[Planned], content: ContentSource, *,
                byte_limit: int) -> Made:
    """Create `destination` (it must not exist) holding exactly `plan`.

    Every create is relative to a directory this call made (O_CREAT | O_EXCL | O_NOFOLLOW,
    mkdirat, symlinkat): nothing in the way can exist, so nothing can be written through. Modes
    are git's (0644 or 0755; no setuid, setgid or sticky bit survives). More than `byte_limit`
    bytes of content raises BudgetExceeded."""
    os.mkdir(destination, 0o755)
    budget = Budget(byte_limit)
    made = Made()
    ordered = sorted(plan, key=lambda p: tree_order(p.rel))
    with Cursor(destination) as cursor:
        for item in ordered:
            parts = item.parts
            cursor.goto(parts[:-1])
            name = parts[-1]
            if item.kind == DIR:
                os.mkdir(name, 0o755, dir_fd=cursor.fd)
                os.chmod(name, 0o755, dir_fd=cursor.fd)  # ours, just made: whatever the umask
                made.directories += 1
            elif item.kind == LINK:
                os.symlink(item.target, name, dir_fd=cursor.fd)
                made.links += 1
            elif item.kind == FILE:
                budget.used += item.size
                if budget.used > budget.limit:
                    raise BudgetExceeded(budget)
                written = _write_file(cursor.fd, name, item, content)
                made.files += 1
                made.bytes_written += written
            else:
                made.skipped.append(item.rel)
    return made


def _write_file(dir_fd: int, name: bytes, item: Planned, content: ContentSource) -> int:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o755 if item.executable else 0o644, dir_fd=dir_fd)
    os.fchmod(fd, 0o755 if item.executable else 0o644)  # whatever the umask
    written = 0

    def sink(data: bytes) -> None:
        nonlocal written
        written += len(data)
        if written > item.size:
            raise TreeChanged(item.rel, "content longer than listed")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    try:
        content(item, sink)
    finally:
        os.close(fd)
    if written != item.size:
        raise TreeChanged(item.rel, "content shorter than listed")
    return written


def remove_tree(root: Path, *, make_writable: bool = False) -> list[str]:
    """Remove `root` and everything below it without following any link, at any depth; returns
    the errors met (removal goes on past them). `make_writable`: each directory is made the
    owner's to write first (a provider's read-only folders, for a harness that is not root)."""
    errors: list[str] = []
    try:
        st = os.stat(root, follow_symlinks=False)
    except FileNotFoundError:
        return errors
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(root)
        return errors
    with Cursor(root) as cursor:
        frames: list[list[bytes]] = [_clear_level(cursor, errors, make_writable)]
        while frames:
            if frames[-1]:
                name = frames[-1].pop()
                try:
                    cursor.down(name)
                except TreeChanged as exc:
                    errors.append(str(exc))
                    continue
                frames.append(_clear_level(cursor, errors, make_writable))
                continue
            frames.pop()
            if frames:
                name = cursor.parts[-1]
                cursor.up()
                try:
                    os.rmdir(name, dir_fd=cursor.fd)
                except OSError as exc:
                    errors.append(f"{name!r}: {exc.strerror}")
    try:
        os.rmdir(root)
    except OSError as exc:
        errors.append(f"{root}: {exc.strerror}")
    return errors


def _clear_level(cursor: Cursor, errors: list[str], make_writable: bool = False) -> list[bytes]:
    """Unlink every non-directory here; return the subdirectories to clear next."""
    subdirs: list[bytes] = []
    if make_writable:
        with contextlib.suppress(OSError):  # by descriptor: the folder entered, never a link
            os.fchmod(cursor.fd, stat.S_IRWXU)
    try:
        names = _names(cursor.fd)
    except OSError as exc:
        errors.append(f"{cursor.rel!r}: {exc.strerror}")
        return subdirs
    for name in names:
        try:
            st = os.stat(name, dir_fd=cursor.fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(name)
            else:
                os.unlink(name, dir_fd=cursor.fd)
        except OSError as exc:
            errors.append(f"{name!r}: {exc.strerror}")
    return subdirs


def remove_at(root: Path, rel: bytes) -> None:
    """Remove the entry `root/rel` (a whole directory, or a file, link or special file),
    reached without following links."""
    parts = _split(rel)
    with Cursor(root) as cursor:
        for name in parts[:-1]:
            cursor.down(name)
        st = os.stat(parts[-1], dir_fd=cursor.fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(parts[-1], dir_fd=cursor.fd)
            return
        cursor.down(parts[-1], _ident(st))
        frames: list[list[bytes]] = [_clear_level(cursor, [])]
        base = len(cursor.parts)
        while True:
            if frames[-1]:
                cursor.down(frames[-1].pop())
                frames.append(_clear_level(cursor, []))
                continue
            frames.pop()
            name = cursor.parts[-1]
            cursor.up()
            os.rmdir(name, dir_fd=cursor.fd)
            if len(cursor.parts) < base:
                return
