"""The run's interrupt gate with real signals sent to this process: a signal interrupts only the
open stretch; anywhere else it is remembered and handed back to the caller's handler at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cto_harness.core.interrupts import InterruptGate
from cto_harness.errors import Interrupted


@pytest.fixture
def caller_saw() -> Iterator[list[int]]:
    """The caller's own SIGINT/SIGTERM handler, recording what reaches it."""
    seen: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: seen.append(signum))
                for s in (signal.SIGINT, signal.SIGTERM)}
    yield seen
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def test_a_signal_while_closed_waits_for_the_end_and_reaches_the_caller(
    caller_saw: list[int]
) -> None:
    with InterruptGate():
        os.kill(os.getpid(), signal.SIGINT)
        sealed = "the bundle is written here"  # not cut short
        assert caller_saw == []
    assert sealed and caller_saw == [signal.SIGINT]


def test_a_signal_while_open_interrupts_there_once(caller_saw: list[int]) -> None:
    with InterruptGate() as gate:
        with pytest.raises(Interrupted, match="SIGTERM"), gate.opened():
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("the stage went on after the signal")
        os.kill(os.getpid(), signal.SIGTERM)  # a second one, while sealing: remembered
    assert caller_saw == [signal.SIGTERM]


def test_a_signal_before_the_stages_interrupts_them_at_their_start(
    caller_saw: list[int]
) -> None:
    with InterruptGate() as gate:
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(Interrupted, match="SIGINT"), gate.opened():
            pytest.fail("the stages started although a signal was waiting")
    assert caller_saw == []  # it interrupted the run: not handed back a second time


def test_the_callers_handlers_are_back_after_the_gate(caller_saw: list[int]) -> None:
    before = signal.getsignal(signal.SIGINT)
    with InterruptGate():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


def test_nothing_the_program_started_outlives_it(tmp_path: Path) -> None:
    # A child the program lost track of (here: started and never waited for, as when a signal
    # cuts a Popen short) is killed and reaped as the program ends.
    code = ("import subprocess, sys\n"
            "from cto_harness.cli import entry\n"
            "child = subprocess.Popen(['sleep', '300'])\n"
            "open(sys.argv[1], 'w').write(str(child.pid))\n"
            "sys.argv = ['cto-harness', '--version']\n"
            "entry.main()\n")
    pid_file = tmp_path / "child.pid"
    done = subprocess.run([sys.executable, "-c", code, str(pid_file)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists(), "the program's child outlived it"


def test_a_signal_whose_exception_python_swallows_still_interrupts_the_stretch() -> None:
    # A signal that comes while a child is being started with a `preexec_fn` (as the harness
    # starts every sandboxed process) is handled in the first Python code after the fork: an
    # at-fork hook (logging's, in every program that imports logging), where Python prints the
    # exception and drops it. Here a hook of the test's own makes that happen every time. The
    # stretch must still be interrupted, while it waits, and only once.
    code = (
        "import os, signal, subprocess, threading\n"
        "from cto_harness.core.interrupts import InterruptGate\n"
        "from cto_harness.errors import Interrupted\n"
        "fired = []\n"
        "def during_fork():\n"
        "    if not fired:\n"
        "        fired.append(True)\n"
        "        signal.raise_signal(signal.SIGINT)  # handled here, inside the hook\n"
        "os.register_at_fork(after_in_parent=during_fork)\n"
        "with InterruptGate() as gate:\n"
        "    try:\n"
        "        with gate.opened():\n"
        "            subprocess.run(['true'], check=True, preexec_fn=lambda: None)\n"
        "            threading.Event().wait(60)  # a stage waiting on something that never comes\n"
        "        print('the stretch ran to its end')\n"
        "    except Interrupted as exc:\n"
        "        print('interrupted:', exc)\n"
        "print('after the gate')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["interrupted: SIGINT", "after the gate"], done.stdout
    assert "Exception ignored" not in done.stderr, done.stderr


class _LibraryError(Exception):
    """What a library (or a stage's own fallback) makes of any exception it catches."""


def test_a_signal_turned_into_another_error_still_ends_the_stretch_interrupted(
    caller_saw: list[int]
) -> None:
    # `Interrupted` is an `Exception`, so any `except Exception` between the signal and the run
    # may catch it; the run must still be `interrupted`, never an `error` that is not retried.
    gate = InterruptGate()
    with gate, pytest.raises(Interrupted, match="SIGINT") as caught, gate.opened():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the stage went on after the signal")
        except Exception as exc:
            raise _LibraryError("a step failed") from exc
    assert isinstance(caught.value.__cause__, _LibraryError)
    assert caller_saw == []


def test_a_signal_dropped_by_the_stages_still_ends_the_stretch_interrupted(
    caller_saw: list[int]
) -> None:
    ran_on = []
    gate = InterruptGate()
    with gate, pytest.raises(Interrupted, match="SIGTERM"), gate.opened():
        with contextlib.suppress(Exception):  # a fallback that drops whatever went wrong
            os.kill(os.getpid(), signal.SIGTERM)
        ran_on.append("the rest of the stage")
    assert ran_on == ["the rest of the stage"] and caller_saw == []


def test_an_error_with_no_signal_comes_out_of_the_stretch_unchanged() -> None:
    with InterruptGate() as gate:
        with pytest.raises(_LibraryError), gate.opened():
            raise _LibraryError("a real fault")
        with gate.opened():
            pass  # a clean stretch after a failed one is not interrupted
