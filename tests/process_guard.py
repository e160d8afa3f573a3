"""Nothing a test starts may outlive it: the guard around every test and the session (a pytest
plugin: `conftest.py` lists this module in `pytest_plugins`).

Leftovers are not hypothetical: orphaned fork-and-exit chains of earlier test runs, re-parented to
a PID 1 that never reaps, once ran for hours on a shared machine and made everything on it six
times slower. So:

- At the start of the session the pytest process becomes a *child subreaper*: every orphan of every
  test (a double-forked daemon, each generation of a fork-and-exit chain, a sandbox's PID 1 whose
  harness died) is re-parented to it, never to an init that may not reap, and stays findable as a
  descendant. Every child also inherits `MARKER` (this session's token) in its environment.
  Processes of a sandbox uid that no harness holds (strays of an earlier, killed session) are
  swept.
- After each test (`end_test`): the orphans it left that have exited are reaped (no zombie piles
  up), and whatever it left *running* below pytest gets a moment to finish exiting, is then killed
  with its whole tree, and is returned so the test fails naming it.
- At the end of the session (`end_session`): everything still below pytest is killed and reaped,
  processes of sandbox uids no harness holds are swept, and any process anywhere that carries this
  session's marker is killed; each of them is named and the session fails.

Only processes this session started are ever touched: its own descendants, its marker, and sandbox
uids whose lock no harness holds (a concurrent session's runs hold theirs).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterable, Iterator

import pytest

from cto_harness.sandbox.process import ensure_subreaper
from cto_harness.sandbox.users import DEFAULT_UID_RANGE, parse_range, sweep_strays

MARKER = "CTO_HARNESS_TEST_SESSION"
GRACE_SECONDS = 3.0  # a process the test just killed may still be exiting
KILL_SECONDS = 10.0
QUIET_SCANS = 10  # in a row, 1 ms apart, before what a test left is called clean
PF_EXITING = 0x4


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, state, flags) of `pid`, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().decode("utf-8", "replace").rpartition(")")[2].split()
        return int(fields[1]), fields[0], int(fields[6])
    except (OSError, IndexError, ValueError):
        return None


def _running(stat: tuple[int, str, int] | None) -> bool:
    """Not gone, not a zombie, not already being torn down by the kernel."""
    return stat is not None and stat[1] not in ("Z", "X") and not stat[2] & PF_EXITING


def describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        uid = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return f"pid {pid} (gone)"
    if len(cmdline) > 200:  # `python -c <code> args`: the head and the arguments say most
        cmdline = f"{cmdline[:120]} ... {cmdline[-80:]}"
    return f"pid {pid} uid {uid}: {cmdline or '[kernel name only]'}"


def _children_of(pid: int) -> set[int]:
    """`pid`'s children, zombies included, from each of its threads' `children` list (one read
    each: a fork-and-exit chain cannot slip past it as it can past a scan of all of /proc)."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), \
                    open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                found |= {int(p) for p in handle.read().split()}
    return found


def children() -> frozenset[int]:
    return frozenset(_children_of(os.getpid()))


def _left_by(before: frozenset[int]) -> tuple[set[int], set[int]]:
    """(running processes at or below our children that were not there before, our new zombie
    children)."""
    new = children() - before
    live: set[int] = set()
    zombies: set[int] = set()
    seen: set[int] = set()
    stack = list(new)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stat = _stat(pid)
        if stat is not None and stat[1] in ("Z", "X") and pid in new:
            zombies.add(pid)
        if _running(stat):
            live.add(pid)
        stack.extend(_children_of(pid))
    return live, zombies


def _reap(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def kill_left(before: frozenset[int], *, grace: float = GRACE_SECONDS) -> list[str]:
    """Reap what the test left exited; kill (with its tree) what it left running, after `grace`
    seconds to finish exiting on its own. Returns what was killed, named. Done only once
    `QUIET_SCANS` scans in a row found nothing running."""
    deadline = time.monotonic() + grace
    named: dict[int, str] = {}
    quiet = 0
    while quiet < QUIET_SCANS:
        live, zombies = _left_by(before)
        _reap(zombies)
        if not live:
            quiet += 1
            time.sleep(0.001)
            continue
        quiet = 0
        if time.monotonic() < deadline:
            time.sleep(0.01)
            continue
        if time.monotonic() > deadline + KILL_SECONDS:
            return [*named.values(),
                    *(describe(pid) + " (STILL RUNNING after SIGKILL)" for pid in live)]
        for pid in live - set(named):
            named[pid] = describe(pid)
        for pid in live:  # a chain's next generation becomes our child: the loop catches it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return list(named.values())


def _marked(token: str) -> list[int]:
    """Processes anywhere whose environment carries this session's marker."""
    needle = f"{MARKER}={token}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{name}/environ", "rb") as handle:
            if needle in handle.read().split(b"\0"):
                found.append(int(name))
    return sorted(p for p in found if _running(_stat(p)))


def _uid_ranges() -> list[tuple[int, int]]:
    ranges = {DEFAULT_UID_RANGE}
    with contextlib.suppress(ValueError):
        ranges.add(parse_range(os.environ.get("CTO_HARNESS_SANDBOX_UIDS")))
    return sorted(ranges)


def sweep_sandbox_strays() -> list[str]:
    """Kill processes of sandbox uids that no harness holds; returns them, named."""
    return [f"pid {p.pid} (sandbox uid): {p.cmdline[:160]}"
            for uids in _uid_ranges() for p in sweep_strays(uids)]


def start_session() -> tuple[str, list[str]]:
    """Become the subreaper and mark the environment; returns (token, strays of earlier
    sessions that were killed)."""
    if not ensure_subreaper():
        raise RuntimeError("cannot become a child subreaper: orphans of the tests would go to "
                           "an init that may never reap them")
    token = f"{os.getpid()}-{secrets.token_hex(8)}"
    os.environ[MARKER] = token
    return token, sweep_sandbox_strays()


def end_session(token: str) -> list[str]:
    """Kill and reap everything this session left; returns it, named."""
    leaked = kill_left(frozenset(), grace=1.0)
    leaked += sweep_sandbox_strays()
    for pid in _marked(token):
        leaked.append(describe(pid) + " (carries the session marker)")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    # Every child of ours is gone or a zombie now: reap them all, so none is handed to an init.
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    return leaked


# --- the fixtures (a plugin: conftest.py lists this module in `pytest_plugins`) ---------------


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_session() -> Iterator[None]:
    """Orphans come to pytest (a subreaper), never to an init that may not reap them; whatever
    the session leaves running is killed at its end, and the session fails naming it."""
    token, strays = start_session()
    if strays:
        print(f"\nkilled {len(strays)} stray processes of sandbox uids left by an earlier "
              "session:\n  " + "\n  ".join(strays[:20]), file=sys.stderr)
    yield
    leaked = end_session(token)
    if leaked:
        pytest.fail(f"LEAKED PROCESSES: {len(leaked)} outlived the test session (killed now):"
                    "\n  " + "\n  ".join(leaked[:30]), pytrace=False)


@pytest.fixture(autouse=True)
def no_process_outlives_the_test() -> Iterator[None]:
    """A test that leaves a process running (a daemon, a fork-and-exit chain) fails, naming it;
    the process is killed with its tree, and the test's exited orphans are reaped."""
    before = children()
    yield
    leaked = kill_left(before)
    if leaked:
        pytest.fail("LEAKED PROCESSES: this test left running (killed now):\n  "
                    + "\n  ".join(leaked[:30]), pytrace=False)
