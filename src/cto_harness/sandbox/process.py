"""The one process runner every engine and the verification step use.

It records argv, sends stdout/stderr to capped log files, enforces a wall-clock limit and, on
timeout or after the main process exits, kills the whole process tree. A process-group kill is not
enough: an agent's shell may start children with `setsid`, which leaves the group and the session.
So the harness makes itself a *child subreaper* (prctl PR_SET_CHILD_SUBREAPER): every orphaned
descendant is re-parented to the harness instead of init, and stays findable in /proc.

One launch at a time per harness process: orphans that appear during a launch are attributed to it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

PR_SET_CHILD_SUBREAPER = 36
DEFAULT_MAX_LOG_BYTES = 32 * 1024 * 1024
_READ_CHUNK = 1 << 16

_subreaper_lock = threading.Lock()
_subreaper_enabled: bool | None = None


def ensure_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); True when it worked."""
    global _subreaper_enabled
    with _subreaper_lock:
        if _subreaper_enabled is None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                _subreaper_enabled = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
            except (OSError, AttributeError):
                _subreaper_enabled = False
        return _subreaper_enabled


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    cmdline: str

    def to_dict(self) -> dict[str, object]:
        return {"pid": self.pid, "cmdline": self.cmdline}


@dataclass
class ProcessResult:
    argv: list[str]
    exit_code: int | None
    timed_out: bool
    started_at: datetime
    finished_at: datetime
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    # Processes killed because the time limit ran out.
    killed_on_timeout: list[ProcessInfo] = field(default_factory=list)
    # Processes still running after the main process exited (daemons); killed, and recorded.
    leftover_processes: list[ProcessInfo] = field(default_factory=list)
    # True when, at the end, no process of this launch was left alive.
    tree_clean: bool = True
    # Why a guard polled while it ran (`watch`) stopped the whole tree early, if one did.
    stopped_by_guard: str | None = None

    @property
    def duration_ms(self) -> int:
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (index 0 is the state, field 3 of
    proc(5)), or None when `pid` is gone. The name may hold spaces and parentheses: the split is
    after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    return raw.rpartition(")")[2].split()


def _read_stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of `pid`, or None when it is gone."""
    fields = stat_fields(pid)
    return None if fields is None else (int(fields[1]), fields[0])


PF_EXITING = 0x4


def _exiting(pid: int) -> bool:
    """True when the kernel is already tearing `pid` down (PF_EXITING in /proc/<pid>/stat)."""
    fields = stat_fields(pid)
    try:
        return fields is None or bool(int(fields[6]) & PF_EXITING)
    except (IndexError, ValueError):
        return True  # gone already


def _alive_or_zombie(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()[:300]


def _process_table() -> dict[int, tuple[int, str]]:
    table: dict[int, tuple[int, str]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _read_stat(int(name))
            if stat is not None:
                table[int(name)] = stat
    return table


def _tree_members(root_pid: int, ignore_children: frozenset[int]) -> tuple[set[int], set[int]]:
    """(live descendants of this launch, our own zombie children to reap).

    A launch's tree is `root_pid` with its descendants, plus any child of ours that was not
    there before the launch (an orphan re-parented to us by the subreaper) with its descendants.
    """
    me = os.getpid()
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _state) in table.items():
        children.setdefault(ppid, []).append(pid)
    roots = {root_pid} | {
        pid for pid in children.get(me, []) if pid not in ignore_children and pid != root_pid
    }
    members: set[int] = set()
    stack = [pid for pid in roots if pid in table]
    while stack:
        pid = stack.pop()
        if pid in members:
            continue
        members.add(pid)
        stack.extend(children.get(pid, []))
    live = {pid for pid in members if table[pid][1] != "Z"}
    zombies = {
        pid for pid in members if table[pid][1] == "Z" and table[pid][0] == me and pid != root_pid
    }
    return live, zombies


def _reap(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _no_children_left() -> bool:
    """With no child of our own from before the launch, every orphan of the launch is ours (the
    subreaper): reap what has exited; True once wait reports no child at all (ECHILD), which a
    /proc scan racing a fork-and-exit chain cannot prove; False while some child still runs."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return False


def kill_tree(
    root_pid: int, ignore_children: frozenset[int], *, rounds: int = 200, prove: bool = False
) -> tuple[list[ProcessInfo], bool]:
    """SIGKILL every live process of the launch until none is left; returns (killed, clean).

    With `prove` (only once Popen has reaped `root_pid`: a wait here must never steal its exit
    status) and no child of the harness from before the launch, clean means `wait` reported no
    child at all; otherwise that a scan of /proc found none. The sandbox proves more on top
    (users.sweep: every process of the sandbox uid)."""
    killed: dict[int, ProcessInfo] = {}
    for _ in range(rounds):
        live, zombies = _tree_members(root_pid, ignore_children)
        _reap(zombies)
        live.discard(os.getpid())
        if not live:
            if not prove or ignore_children or _alive_or_zombie(root_pid) \
                    or not ensure_subreaper():  # orphans went to init: wait proves nothing
                return list(killed.values()), True
            if _no_children_left():
                return list(killed.values()), True
            time.sleep(0.001)
            continue  # a child the scan missed: scan and kill again
        # Name every member before killing any: killing a PID namespace's monitor first tears
        # the rest down, and a member caught mid-teardown would go unrecorded.
        for pid in live:
            # A task already exiting (e.g. torn down with its PID namespace) is no leftover.
            if pid not in killed and not _exiting(pid):
                killed[pid] = ProcessInfo(pid, _cmdline(pid))
        for pid in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    live, _ = _tree_members(root_pid, ignore_children)
    if prove and not ignore_children and not _alive_or_zombie(root_pid) and ensure_subreaper():
        return list(killed.values()), not live and _no_children_left()
    return list(killed.values()), not live


LEFTOVER_GRACE_SECONDS = 0.25


def _settle(root_pid: int, ignore_children: frozenset[int]) -> None:
    """Give a tree whose main process exited a moment to finish exiting on its own.

    bwrap's monitor exits as soon as its PID-namespace init reports the exit status, while the
    init is still tearing the namespace down; without this grace it would be counted (and
    killed) as a daemon the provider left behind. A real daemon is still there afterwards.
    """
    deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
    while time.monotonic() < deadline:
        live, zombies = _tree_members(root_pid, ignore_children)
        _reap(zombies)
        live.discard(os.getpid())
        if not live:
            return
        time.sleep(0.005)


class _CappedPump(threading.Thread):
    """Copies a pipe to a file up to `cap` bytes and counts (but drops) the rest."""

    def __init__(self, source: IO[bytes], dest: Path, cap: int) -> None:
        super().__init__(daemon=True)
        self.source, self.dest, self.cap = source, dest, cap
        self.total = 0
        self.truncated = False
        # Why the log could not be written (a full or read-only disk); the pipe is still drained
        # to its end, so the process never blocks on it.
        self.error: str | None = None

    def run(self) -> None:
        fd = self.source.fileno()
        out: IO[bytes] | None = None
        try:
            out = open(self.dest, "wb")  # noqa: SIM115 (closed below, also after a write error)
        except OSError as exc:
            self.error = f"{self.dest}: {exc.strerror or exc}"
        while chunk := os.read(fd, _READ_CHUNK):
            room = self.cap - self.total
            if room > 0:
                out = self._write(out, chunk[:room])
            if len(chunk) > room:
                self.truncated = True
            self.total += len(chunk)
        if self.truncated:
            out = self._write(out, f"\n[cto-harness: output cut at {self.cap} bytes]\n".encode())
        if out is not None:
            with contextlib.suppress(OSError):
                out.close()
        self.source.close()

    def _write(self, out: IO[bytes] | None, data: bytes) -> IO[bytes] | None:
        if out is None:
            return None
        try:
            out.write(data)
            return out
        except OSError as exc:
            self.error = f"{self.dest}: {exc.strerror or exc}"
            with contextlib.suppress(OSError):
                out.close()
            return None


PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


_KEYRING_PROGRAM: list[object] = []  # built once: [the program, or None]


def _keyring_program() -> object:
    """The launcher's keyring filter (`launcher.keyring_program`) for a harness running as root,
    which may install it without no-new-privs (so bwrap and setpriv still work below it); None
    elsewhere (the launcher installs it after its own drop)."""
    from cto_harness.sandbox import launcher

    if os.geteuid() != 0:
        return None
    if not _KEYRING_PROGRAM:
        _KEYRING_PROGRAM.append(launcher.keyring_program())
    return _KEYRING_PROGRAM[0]


# The tasks (processes and threads) a sandbox uid may have at once, set as RLIMIT_NPROC on what
# the harness starts confined. The kernel counts it per real uid, and each run has a uid of its
# own, so a fork bomb stops there instead of taking the machine's pid space and memory. An agent
# with its runtime's threads, git and a test run uses a few hundred at the most.
SANDBOX_TASK_LIMIT = 2048


def _child_setup(file_size_limit: int | None,
                 task_limit: int | None = None) -> Callable[[], None]:
    from cto_harness.sandbox.launcher import install_keyring_filter

    parent = os.getpid()
    keyring = _keyring_program()  # built here, in the harness, before the fork

    def apply() -> None:
        # The child dies with the harness (a SIGKILLed harness leaves no launcher behind; the
        # sandbox's own chain of parent-death signals takes everything below it).
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(125)  # the harness died before the signal was armed
        if file_size_limit is not None:
            # Makes one runaway file stop at the limit (EFBIG) instead of filling the disk.
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
        if task_limit is not None and os.geteuid() == 0:
            # Bites once the sandbox drops to its uid (root is exempt); a harness that is not
            # root shares its uid with the sandbox, where the count would include its own.
            resource.setrlimit(resource.RLIMIT_NPROC, (task_limit, task_limit))
        if keyring is not None:
            # No process the harness runs this way (a sandbox and all below it, a build step)
            # reaches the kernel keyring; a kernel without seccomp leaves it to the canary.
            install_keyring_filter(keyring)

    return apply


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout_path: Path,
    stderr_path: Path,
    timeout_seconds: float,
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
    file_size_limit: int | None = None,
    on_start: Callable[[int], None] | None = None,
    pass_fds: Sequence[int] = (),
    watch: Callable[[], str | None] | None = None,
    task_limit: int | None = None,
) -> ProcessResult:
    """Run `argv` (never through a shell) and return what happened; leaves no process behind.
    `pass_fds`: descriptors the process inherits (the harness's test-result channel). `watch`:
    polled every WATCH_SECONDS while it runs; a reason it returns kills the whole tree.
    `task_limit`: RLIMIT_NPROC for a confined process (`SANDBOX_TASK_LIMIT`)."""
    ensure_subreaper()
    stdout_path.parent.mkdir(parents=True, exist_ok=True)
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    before = frozenset(_children_of_self())
    started = datetime.now(UTC)
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        close_fds=True,
        pass_fds=tuple(pass_fds),
        preexec_fn=_child_setup(file_size_limit, task_limit),
    )
    pumps: list[_CappedPump] = []
    timed_out = False
    killed: list[ProcessInfo] = []
    leftovers: list[ProcessInfo] = []
    clean = True
    stopped: str | None = None
    try:  # from the first step after the start: an interrupt anywhere still kills the tree
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            _CappedPump(proc.stdout, stdout_path, max_log_bytes),
            _CappedPump(proc.stderr, stderr_path, max_log_bytes),
        ]
        for pump in pumps:
            pump.start()
        if on_start is not None:
            on_start(proc.pid)
        try:
            stopped = _wait_exit(proc, timeout_seconds, watch)
        except subprocess.TimeoutExpired:
            timed_out = True
        if timed_out or stopped:
            killed, clean = kill_tree(proc.pid, before)
            proc.wait()
            more, clean = kill_tree(proc.pid, before, prove=True)
            killed += [p for p in more if p.pid not in {k.pid for k in killed}]
        else:
            # The main process is gone; anything of its tree still alive once the exit has
            # settled is a leftover daemon.
            _settle(proc.pid, before)
            leftovers, clean = kill_tree(proc.pid, before, prove=True)
    except BaseException:
        # Interrupted (SIGTERM, Ctrl-C) or a fault: the tree must still die before we go on.
        kill_tree(proc.pid, before)
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)
        raise
    finally:
        for pump in pumps:
            if pump.ident is not None:  # started (an interrupt may come between the two)
                pump.join(timeout=10)
    finished = datetime.now(UTC)
    return ProcessResult(
        argv=list(argv),
        exit_code=proc.returncode,
        timed_out=timed_out,
        started_at=started,
        finished_at=finished,
        stdout_bytes=pumps[0].total,
        stderr_bytes=pumps[1].total,
        stdout_truncated=pumps[0].truncated,
        stderr_truncated=pumps[1].truncated,
        killed_on_timeout=killed,
        leftover_processes=leftovers,
        tree_clean=clean,
        stopped_by_guard=stopped,
    )


WATCH_SECONDS = 0.5


def _wait_exit(proc: subprocess.Popen[bytes], timeout: float,
               watch: Callable[[], str | None] | None = None) -> str | None:
    """Wait for `proc` with a time limit, waking the moment it exits; returns the reason `watch`
    gave to stop it early (the caller kills the tree), else None once it exited.

    `Popen.wait(timeout)` polls with sleeps of up to 50 ms, which every run pays several times
    (canary, provider, verification); a pidfd becomes readable exactly when the process exits.
    """
    deadline = time.monotonic() + timeout
    try:
        pidfd: int | None = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # an old kernel, or the process is already reaped
        pidfd = None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            wait = left if watch is None else min(left, WATCH_SECONDS)
            if pidfd is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=wait)
                    return None
            # select() resumes after a signal handler returns (PEP 475), re-raises what it raises.
            elif select.select([pidfd], [], [], wait)[0]:
                break
            if watch is not None and (reason := watch()):
                return reason
    finally:
        if pidfd is not None:
            os.close(pidfd)
    proc.wait()
    return None


def _children_of_self() -> list[int]:
    me = os.getpid()
    return [pid for pid, (ppid, _state) in _process_table().items() if ppid == me]


def end_own_children(rounds: int = 100) -> list[int]:
    """Kill and reap every child this process still has, until wait reports none (the program's
    last step). The harness is a subreaper, so whatever it started and lost track of (a child
    whose Popen was cut short by a signal, a grandchild orphaned by it) is its child here; none
    may outlive the program. Returns the pids that were still running."""
    killed: list[int] = []
    for _ in range(rounds):
        children = [pid for pid in _children_of_self() if _alive_or_zombie(pid)]
        if not children and _no_children_left():
            break
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        for pid in children:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
    return killed


def run_quiet(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
    timeout: float = 120, check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """A short trusted helper command (git, sha256sum): argv only, captured text output."""
    return subprocess.run(
        list(argv), cwd=cwd, env=None if env is None else dict(env), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, errors="surrogateescape", timeout=timeout, check=check,
    )
