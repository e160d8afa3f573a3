"""The unprivileged identity every sandboxed process runs as, handed files and taken back.

When the harness runs as root, the canary, the provider, the identity probe and the verification
run as a *sandbox uid*: a uid (with the gid of the same number, no supplementary group) taken per
run from `CTO_HARNESS_SANDBOX_UIDS` (default 61100-61163: above the login range, below systemd's
dynamic users) and held for the run with an exclusive `flock` on
`/run/cto-harness/uids/<uid>.lock`, so two concurrent runs never share one. No passwd entry is
needed (nothing is added to the machine); a uid or gid that has an entry belongs to somebody and is
skipped, as is a uid whose processes are alive while nobody holds its lock (a stray, killed first).

Because the uid is the run's alone, it is also the run's containment handle: `sweep()` forks a
helper that takes the uid and calls `kill(-1, SIGKILL)`, which the kernel applies to every process
of that uid atomically with respect to fork (a fork racing it either completes before the signal is
queued or fails), then waits until /proc shows no process with that uid among its real, effective,
saved or file-system ids. Only then is the tree reported clean, and only then are the files taken
back (`take_back`) for the harness to read.

A harness that is not root cannot switch uid: its sandboxed processes keep its uid inside a user
namespace (see launcher.py), and `acquire()` says so (`source: harness`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import grp
import io
import os
import pwd
import random
import signal
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cto_harness.errors import Blocked, BlockerCode
from cto_harness.sandbox.process import ProcessInfo
from cto_harness.tree import walk

DEFAULT_UID_RANGE = (61100, 61163)
LOCK_DIRS = (Path("/run/cto-harness/uids"), Path("/var/lib/cto-harness/uids"))
PR_SET_DUMPABLE = 4
SWEEP_SECONDS = 10.0


@dataclass
class SandboxUser:
    """The identity of one run's sandboxed processes."""

    uid: int
    gid: int
    # allocated: a uid of the range, locked for this run; harness: the (non-root) harness's own.
    source: str
    lock_path: Path | None = None
    # The open lock file: the uid is this run's for as long as this object lives, and no longer
    # (an interrupt that drops the object before `release` still frees the uid).
    _lock: io.FileIO | None = field(default=None, repr=False)

    @property
    def separate(self) -> bool:
        """True when the sandbox uid differs from the harness's (signals, /proc, files)."""
        return self.uid != os.geteuid()

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def to_dict(self) -> dict[str, object]:
        return {"uid": self.uid, "gid": self.gid, "source": self.source}


def parse_range(raw: str | None) -> tuple[int, int]:
    """`CTO_HARNESS_SANDBOX_UIDS`: `N` or `N-M` (1 <= N <= M < 2**31 - 1)."""
    if raw is None or raw.strip() == "":
        return DEFAULT_UID_RANGE
    first, _, last = raw.strip().partition("-")
    last = last or first
    if not (first.isdigit() and last.isdigit()):
        raise ValueError(f"expected N or N-M, got {raw!r}")
    low, high = int(first), int(last)
    if not 0 < low <= high < 2**31 - 1:
        raise ValueError(f"expected 0 < N <= M < 2147483647, got {raw!r}")
    return low, high


def harden_harness() -> None:
    """Make the harness non-dumpable: /proc/<pid>/environ, maps, mem, auxv and ptrace are then
    closed to every other process of any uid but root (a provider sharing the harness's uid, or
    one that finds it through a /proc it can see)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _lock_dir() -> Path:
    for folder in LOCK_DIRS:
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = folder.lstat()
        except OSError:
            continue
        # Only a folder of root's that nobody else can write holds meaningful locks.
        if stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022:
            return folder
    raise Blocked(BlockerCode.SANDBOX_USER_UNAVAILABLE,
                  f"no root-owned lock folder for sandbox uids ({', '.join(map(str, LOCK_DIRS))})")


def _has_account(uid: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            continue
    return False


def _open_lock(path: str, _flags: int) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)


def acquire(uid_range: tuple[int, int]) -> SandboxUser:
    """A sandbox identity for one run; blocked `sandbox_user_unavailable` when there is none."""
    if os.geteuid() != 0:
        return SandboxUser(uid=os.geteuid(), gid=os.getegid(), source="harness")
    low, high = uid_range
    folder = _lock_dir()
    candidates = list(range(low, high + 1))
    start = random.randrange(len(candidates))  # spread concurrent harnesses over the range
    skipped: list[str] = []
    for uid in candidates[start:] + candidates[:start]:
        if _has_account(uid):
            skipped.append(f"{uid} (has a passwd or group entry)")
            continue
        path = folder / f"{uid}.lock"
        # Owned by a file object from the moment it opens: whatever interrupts this loop or the
        # run (Ctrl-C, a Ray cancel in a worker that lives on), the lock is closed with it.
        lock = io.FileIO(path, "r+", opener=_open_lock)
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                continue
            raise
        # Nobody holds this uid: a process still running as it is a stray of a harness that
        # died without cleaning up. It must not meet this run's provider.
        _, clean = sweep(uid)
        if not clean:
            lock.close()
            skipped.append(f"{uid} (processes that do not die)")
            continue
        return SandboxUser(uid=uid, gid=uid, source="allocated", lock_path=path, _lock=lock)
    detail = f"; skipped {', '.join(skipped[:5])}" if skipped else ""
    raise Blocked(BlockerCode.SANDBOX_USER_UNAVAILABLE,
                  f"every sandbox uid of {low}-{high} (CTO_HARNESS_SANDBOX_UIDS) is in use{detail}")


def sweep_strays(uid_range: tuple[int, int]) -> list[ProcessInfo]:
    """Kill every process of a sandbox uid of the range that no harness holds (its lock is free):
    strays of a run that died or of a test whose guard was removed. Returns what was killed; a
    uid some harness holds is never touched."""
    if os.geteuid() != 0:
        return []
    folder = _lock_dir()
    killed: list[ProcessInfo] = []
    for uid in sorted(_uids_running(uid_range)):
        with io.FileIO(folder / f"{uid}.lock", "r+", opener=_open_lock) as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # held: that uid is some run's, alive
            killed += sweep(uid)[0]
    return killed


# --- ownership ------------------------------------------------------------------------------


def _unshare_inode(name: bytes, dir_fd: int, st: os.stat_result) -> None:
    """Replace a hard-linked file by a copy of its own (same bytes and mode): its inode is
    shared with another tree (a store, a cache), whose owner must not change with this one."""
    temp = b".cto-unlink-%d-" % os.getpid() + name[:200]
    source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        target = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         stat.S_IMODE(st.st_mode) & 0o777, dir_fd=dir_fd)
        try:
            while chunk := os.read(source, 1 << 20):
                os.write(target, chunk)
            os.fchmod(target, stat.S_IMODE(st.st_mode) & 0o777)
        finally:
            os.close(target)
    finally:
        os.close(source)
    os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _walk_chown(root: Path, uid: int, gid: int, *, unshare_links: bool = False,
                strip_write: bool = False, owned_by: tuple[int, int] | None = None) -> int:
    """lchown `root` and everything below it (never following a symlink); returns the count.
    By directory descriptor and name (tree.walk), so a tree deeper than PATH_MAX is no limit.
    `unshare_links`: a regular file with other hard links gets an inode of its own first.
    `strip_write`: no group or other write bit is left on a file or folder (a provider's
    `chmod 0777` would leave a root-owned tree any local user may write).
    `owned_by` (uid, gid): only entries of that uid or gid change. In a tree the sandbox uid
    held, an entry of anyone else is a hard link to an inode outside it (a world-writable file
    elsewhere on the file system): its owner and mode are not the harness's to change."""
    def foreign(st: os.stat_result) -> bool:
        return owned_by is not None and st.st_uid != owned_by[0] and st.st_gid != owned_by[1]

    try:
        st = os.lstat(root)
    except FileNotFoundError:
        return 0
    count = 0
    if (st.st_uid, st.st_gid) != (uid, gid) and not foreign(st):
        os.lchown(root, uid, gid)
        count += 1
    if strip_write and not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022 and not foreign(st):
        os.chmod(root, stat.S_IMODE(st.st_mode) & ~0o022, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        return count
    for node, dir_fd in walk(root):
        name = node.name
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if foreign(st):
            continue
        if (st.st_uid, st.st_gid) != (uid, gid):
            if unshare_links and stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                _unshare_inode(name, dir_fd, st)
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
            count += 1
        if strip_write and (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) \
                and st.st_mode & 0o022:
            # Owned by the harness now (chown above), so the mode can no longer be raced.
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dir_fd)
            try:
                os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) & ~0o022)
            finally:
                os.close(fd)
    return count


def hand_over(paths: Iterable[Path], user: SandboxUser) -> int:
    """Give the sandbox identity the files it may write (harness-made trees only). A file
    hard-linked from elsewhere is given as a copy: the other links keep their owner."""
    if not user.separate:
        return 0
    return sum(_walk_chown(p, user.uid, user.gid, unshare_links=True)
               for p in paths if os.path.lexists(p))


def take_back(paths: Iterable[Path], user: SandboxUser) -> int:
    """Make the harness the owner again of what the sandbox identity held. Call only after a
    clean `sweep`: no process of that uid is left to race the walk."""
    if not user.separate:
        return 0
    uid, gid = os.geteuid(), os.getegid()
    return sum(_walk_chown(p, uid, gid, strip_write=True, owned_by=(user.uid, user.gid))
               for p in paths if os.path.lexists(p))


# --- processes ------------------------------------------------------------------------------


def _status(pid: str) -> tuple[str, list[int], str] | None:
    """(state, [real, effective, saved, fs uid], name) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    state, uids, name = "", [], ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "State":
            state = value.strip()[:1]
        elif key == "Uid":
            uids = [int(v) for v in value.split()]
        elif key == "Name":
            name = value.strip()
    return state, uids, name


def processes_of(uid: int, *, exclude: frozenset[int] = frozenset()) -> list[ProcessInfo]:
    """Live processes (not zombies) with `uid` among their ids."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        status = _status(name)
        if status is None:
            continue
        state, uids, comm = status
        if uid in uids and state not in ("Z", "X"):
            cmdline = ""
            with contextlib.suppress(OSError), open(f"/proc/{name}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
            found.append(ProcessInfo(int(name), (cmdline.strip() or f"[{comm}]")[:300]))
    return found


def _uids_running(uid_range: tuple[int, int]) -> set[int]:
    """The uids of the range that some live process holds (one scan of /proc)."""
    found: set[int] = set()
    for name in os.listdir("/proc"):
        status = _status(name) if name.isdigit() else None
        if status is not None and status[0] not in ("Z", "X"):
            found |= {u for u in status[1] if uid_range[0] <= u <= uid_range[1]}
    return found


def _kill_all_as(uid: int) -> None:
    """kill(-1, SIGKILL) from a helper holding `uid`: every process of that uid dies, atomically
    with respect to fork. Root must never call kill(-1) itself: that is every process."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only makes system calls, then exits
        code = 1
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            if os.getresuid() == (uid, uid, uid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(-1, signal.SIGKILL)
                code = 0
        finally:
            os._exit(code)
    with contextlib.suppress(ChildProcessError):  # a reaper of all children got it first
        os.waitpid(pid, 0)


def sweep(uid: int, *, seconds: float = SWEEP_SECONDS) -> tuple[list[ProcessInfo], bool]:
    """Kill every process of `uid` and wait until none is left: (what was alive, proven clean)."""
    if uid == 0 or uid == os.geteuid() or os.geteuid() != 0:
        return [], False  # never: that would be the harness itself, or every process
    alive = processes_of(uid)
    _kill_all_as(uid)
    deadline = time.monotonic() + seconds
    while True:
        left = processes_of(uid)
        if not left:
            return alive, True
        if time.monotonic() > deadline:
            return alive, False
        # A process that was SIGKILLed is tearing down; give it the CPU.
        time.sleep(0.002)
