"""The process runner: time limit, whole-tree kill (setsid grandchildren too), leftovers, logs."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

from cto_harness.sandbox.process import run_process

DOUBLE_FORK = textwrap.dedent(
    """
    import os, sys, time
    if os.fork() == 0:
        os.setsid()                 # leaves the process group and the session
        if os.fork() == 0:
            open(sys.argv[1], "w").write(str(os.getpid()))
            time.sleep(600)
        os._exit(0)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _run(tmp_path: Path, code: str, *args: str, timeout: float = 10, **kw: object):
    return run_process(
        [sys.executable, "-c", code, *args], cwd=tmp_path, env=dict(os.environ),
        stdout_path=tmp_path / "out.log", stderr_path=tmp_path / "err.log",
        timeout_seconds=timeout, **kw,  # type: ignore[arg-type]
    )


def test_timeout_kills_a_double_forked_setsid_grandchild(tmp_path: Path) -> None:
    started = time.monotonic()
    result = _run(tmp_path, DOUBLE_FORK, str(tmp_path / "grandchild.pid"), timeout=1.5)
    assert result.timed_out
    assert time.monotonic() - started < 10
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert not _alive(grandchild), "the setsid grandchild survived the timeout"
    assert grandchild in {p.pid for p in result.killed_on_timeout}
    assert result.tree_clean


DAEMON = textwrap.dedent(
    """
    import os, sys, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            open(sys.argv[1], "w").write(str(os.getpid()))
            time.sleep(600)
        os._exit(0)
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.01)
    print("parent done")
    """
)


def test_daemon_left_after_exit_is_recorded_and_killed(tmp_path: Path) -> None:
    result = _run(tmp_path, DAEMON, str(tmp_path / "daemon.pid"))
    assert not result.timed_out
    assert result.exit_code == 0
    daemon = int((tmp_path / "daemon.pid").read_text())
    assert daemon in {p.pid for p in result.leftover_processes}
    assert not _alive(daemon)


def test_exit_code_and_both_streams_are_recorded(tmp_path: Path) -> None:
    result = _run(tmp_path, "import sys; print('out'); print('err', file=sys.stderr); sys.exit(7)")
    assert result.exit_code == 7
    assert (tmp_path / "out.log").read_text() == "out\n"
    assert (tmp_path / "err.log").read_text() == "err\n"
    assert result.leftover_processes == []


def test_output_beyond_the_cap_is_counted_not_kept(tmp_path: Path) -> None:
    result = _run(tmp_path, "import sys; sys.stdout.write('x' * 500_000)", max_log_bytes=1000)
    assert result.stdout_bytes == 500_000
    assert result.stdout_truncated
    assert (tmp_path / "out.log").stat().st_size < 1200


def test_stdin_is_dev_null(tmp_path: Path) -> None:
    result = _run(tmp_path, "import sys; print(repr(sys.stdin.read()))", timeout=5)
    assert not result.timed_out
    assert (tmp_path / "out.log").read_text() == "''\n"


FORK_UNTIL_REFUSED = textwrap.dedent(
    """
    import os, sys, time
    os.setgroups([])
    os.setgid(int(sys.argv[1]))
    os.setuid(int(sys.argv[1]))      # a sandbox uid, as the confined process will be
    made = 0
    for _ in range(200):
        try:
            pid = os.fork()
        except BlockingIOError:      # EAGAIN: RLIMIT_NPROC
            break
        if pid == 0:
            time.sleep(600)
            os._exit(0)
        made += 1
    print(made, flush=True)
    """
)


def test_a_confined_process_cannot_fork_past_its_task_limit(tmp_path: Path) -> None:
    """RLIMIT_NPROC, set before the drop, bounds what the sandbox uid can start (a fork bomb
    stops there); the whole tree is still killed at the end."""
    import pytest

    from cto_harness.sandbox import users

    if os.geteuid() != 0:
        pytest.skip("needs root to drop to a sandbox uid")
    user = users.acquire((61100, 61163))
    try:
        result = _run(tmp_path, FORK_UNTIL_REFUSED, str(user.uid), task_limit=20)
        made = int((tmp_path / "out.log").read_text())
        # The script itself is one task; its children are refused past the limit.
        assert 0 < made < 20, made
        assert result.tree_clean
        _, clean = users.sweep(user.uid)
        assert clean
    finally:
        user.release()
