"""The program's exit (cli/entry.py `_leave`): it skips the interpreter's teardown, but never the
exit functions, the standard streams' last bytes, a running non-daemon thread or the exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROGRAM = """\
import atexit, os, sys, threading
from cto_harness.cli import entry
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
atexit.register(os.write, fd, b"atexit\\n")
class Teardown:  # freed in the interpreter's teardown, which the fast exit skips
    def __init__(self, write, fd):
        self.write, self.fd = write, fd
    def __del__(self):
        self.write(self.fd, b"teardown\\n")
keep = Teardown(os.write, fd)
if sys.argv[2] == "thread":
    def worker():  # runs until the main thread has ended, whatever the load
        while threading.main_thread().is_alive():
            threading.Event().wait(0.01)
        os.write(fd, b"thread\\n")
    threading.Thread(target=worker).start()  # not a daemon: the exit must wait for it
sys.argv = ["cto-harness", "run", "no-such-case"]
print("x" * 100_000, end="")  # unflushed output at the end: it must all arrive
sys.exit(entry.main())
"""


def _program(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess[str], str]:
    marker = tmp_path / "marker"
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(marker), mode],
                          capture_output=True, text=True, timeout=120)
    return done, marker.read_text()


def test_the_exit_runs_the_exit_functions_flushes_output_and_keeps_the_code(
        tmp_path: Path) -> None:
    done, marker = _program(tmp_path, "plain")
    assert done.returncode == 64, done.stderr  # a usage error: unknown case id
    assert "unknown case id" in done.stderr
    assert done.stdout == "x" * 100_000
    assert marker == "atexit\n"  # and no "teardown": the interpreter's was skipped


def test_a_running_non_daemon_thread_is_waited_for(tmp_path: Path) -> None:
    done, marker = _program(tmp_path, "thread")
    assert done.returncode == 64, done.stderr
    assert sorted(marker.splitlines()) == ["atexit", "teardown", "thread"]
