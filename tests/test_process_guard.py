"""The guard around every test (process_guard.py, wired in conftest.py) against what leaked before:
a detached daemon and a fork-and-exit chain of root are found below pytest, named, killed and
reaped; a process carrying the session's marker is found wherever it is."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import process_guard

# Double fork and setsid: the daemon leaves its parent's group and session, and its parent exits.
DAEMON = textwrap.dedent("""
    import os, sys, time
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            open(sys.argv[1], "w").write(str(os.getpid()))
            time.sleep(120)
        os._exit(0)
""")
# Every generation forks the next and exits; bounded by this test's pid (and a minute).
CHAIN = textwrap.dedent("""
    import os, sys, time
    deadline, lifeline = time.time() + 60, int(sys.argv[2])
    if os.fork() == 0:
        os.setsid()
        while time.time() < deadline:
            try:
                os.kill(lifeline, 0)
            except ProcessLookupError:
                os._exit(0)
            if os.fork() != 0:
                os._exit(0)
            with open(sys.argv[1], "a") as handle:
                handle.write("x")
            time.sleep(0.002)
""")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _new_zombie_children(before: frozenset[int]) -> list[int]:
    """Our zombie children the test made (an earlier test's module fixture may hold others)."""
    return [pid for pid in process_guard.children() - before
            if (process_guard._stat(pid) or (0, "gone", 0))[1] == "Z"]


def test_the_session_made_pytest_the_reaper_of_every_orphan(tmp_path: Path) -> None:
    """The daemon's parent exits at once: the daemon is re-parented to pytest, never to PID 1."""
    before = process_guard.children()
    pid_file = tmp_path / "daemon.pid"
    subprocess.run([sys.executable, "-c", DAEMON, str(pid_file)], check=True)
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the daemon never started"
        time.sleep(0.01)
    daemon = int(pid_file.read_text())
    assert process_guard._stat(daemon) is not None
    assert process_guard._stat(daemon)[0] == os.getpid()  # type: ignore[index]
    leaked = process_guard.kill_left(before, grace=0.0)
    assert [line.split(":")[0] for line in leaked] == [f"pid {daemon} uid {os.geteuid()}"]
    assert leaked[0].split(": ", 1)[1].startswith(sys.executable)
    assert process_guard._stat(daemon) is None  # killed and reaped: not even a zombie
    assert _new_zombie_children(before) == []


def test_a_fork_and_exit_chain_is_killed_and_every_generation_reaped(tmp_path: Path) -> None:
    before = process_guard.children()
    progress = tmp_path / "progress"
    subprocess.run([sys.executable, "-c", CHAIN, str(progress), str(os.getpid())], check=True)
    deadline = time.monotonic() + 30
    while _size(progress) < 20:  # a few generations have run
        assert time.monotonic() < deadline, "the chain never ran"
        time.sleep(0.01)
    leaked = process_guard.kill_left(before, grace=0.0)
    assert leaked and all("STILL RUNNING" not in line for line in leaked), leaked
    size = _size(progress)
    time.sleep(0.2)
    assert _size(progress) == size, "the chain outlived the guard"
    assert process_guard.kill_left(before, grace=0.0) == []
    assert _new_zombie_children(before) == []


def test_nothing_is_killed_when_nothing_was_left(tmp_path: Path) -> None:
    before = process_guard.children()
    subprocess.run([sys.executable, "-c", "print('done')"], check=True, capture_output=True)
    assert process_guard.kill_left(before, grace=0.0) == []


def test_a_process_carrying_the_marker_is_found() -> None:
    token = os.environ[process_guard.MARKER]
    with subprocess.Popen(["sleep", "60"]) as marked, \
            subprocess.Popen(["sleep", "60"], env={"PATH": os.defpath}) as unmarked:
        try:
            found = process_guard._marked(token)
            assert marked.pid in found and unmarked.pid not in found
        finally:
            marked.kill()
            unmarked.kill()


INNER = textwrap.dedent('''
    import os, subprocess, sys, time

    import pytest

    DAEMON = {daemon!r}


    @pytest.fixture(scope="session")
    def careless_server(tmp_path_factory):
        # Started before any test's snapshot, never stopped: only the session's guard sees it.
        subprocess.run([sys.executable, "-c", DAEMON, "{session_pid}", "session-daemon"])
        # The daemon is ours only once its parent has exited (it is then re-parented to this
        # subreaper): wait for that event, or the first test's snapshot could miss it.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                pid = int(open("{session_pid}").read())
                with open(f"/proc/{{pid}}/stat") as handle:
                    if int(handle.read().rpartition(")")[2].split()[1]) == os.getpid():
                        break
            except (OSError, ValueError):
                pass
            time.sleep(0.001)
        yield


    def test_leaves_a_daemon(careless_server):
        subprocess.run([sys.executable, "-c", DAEMON, "{test_pid}", "test-daemon"])


    def test_leaves_nothing(careless_server):
        subprocess.run([sys.executable, "-c", "print(1)"])
''')


def test_a_session_that_leaks_fails_naming_what_it_left_and_leaves_nothing(tmp_path: Path) -> None:
    """The plugin end to end, in a pytest session of its own: a test's daemon fails that test; a
    session fixture's daemon fails the session; both are dead afterwards."""
    test_pid, session_pid = tmp_path / "test.pid", tmp_path / "session.pid"
    (tmp_path / "test_leaky.py").write_text(
        INNER.format(daemon=DAEMON, test_pid=test_pid, session_pid=session_pid))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), str(Path(__file__).parents[1] / "src")])}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "process_guard",
         "--rootdir", str(tmp_path), str(tmp_path / "test_leaky.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    pids = {int(path.read_text()) for path in (test_pid, session_pid)}
    assert "2 passed, 2 errors" in out, out
    assert "this test left running" in out and "test-daemon" in out
    assert "outlived the test session" in out and "session-daemon" in out
    assert all(process_guard._stat(pid) is None for pid in pids)
