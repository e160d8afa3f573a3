"""Live progress of a long run: while the provider runs, the current phase and its last tool call,
read from its own event log as it is written. The stand-in's implementer waits in a tool call
until the test has seen that call on the progress output, so the timing is driven by what is
shown, never by sleeps: a heartbeat line (its interval a parameter here) when stderr is not a
terminal, one redrawn line on a terminal (a real pty, the users' command)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

import pytest

from case_helpers import base_env
from cto_harness.core.run import execute_run
from cto_harness.progress import RunProgress
from cto_harness.settings import Settings

pytestmark = pytest.mark.slow
WAIT_SECONDS = 120


class Recorder(io.StringIO):
    """A stream (not a terminal) whose text can be waited on."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def write(self, text: str) -> int:
        with self.changed:
            written = super().write(text)
            self.changed.notify_all()
        return written

    def wait_for(self, *needles: str) -> bool:
        deadline = time.monotonic() + WAIT_SECONDS
        with self.changed:
            while not all(n in self.getvalue() for n in needles):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
        return True


def _say_go(runs: Path) -> Path:
    """Let the waiting implementer go on: `.case/<task id>/go` in the run's workspace."""
    (events,) = runs.glob("*/workspace/.case/*/events")
    go = events.parent / "go"
    go.write_text("go\n")
    return go


def test_heartbeats_name_the_phase_and_the_last_tool_call_while_the_provider_runs(
        case_repo, standin, case_home, tmp_path: Path,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    env = base_env(case_home, runs, standin("wait-go"))
    for name in ("CTO_HARNESS_HOME", "CTO_HARNESS_RUNS_DIR"):
        monkeypatch.setenv(name, env[name])
    stream = Recorder()
    seen: dict[str, object] = {}

    def release() -> None:
        # A heartbeat that shows the phase and the waiting tool call, then go.
        seen["heartbeat"] = stream.wait_for("(still running)", "last tool bash: while [ ! -e")
        seen["text_before_go"] = stream.getvalue()
        seen["go"] = _say_go(runs)

    helper = threading.Thread(target=release, daemon=True)
    helper.start()
    with RunProgress(stream, "r1-string-slugify [case]", interval=0.05) as progress:
        result = execute_run("r1-string-slugify", "case", harness_root=case_repo / "harness",
                             settings=Settings.from_env(env), environ=env, observer=progress)
    helper.join(timeout=10)
    assert seen.get("heartbeat") is True, stream.getvalue()[-3000:]
    assert result.report.verdict == "pass", result.report.blockers
    before = str(seen["text_before_go"])
    heartbeat = next(line for line in before.splitlines()
                     if "(still running)" in line and "last tool bash" in line)
    assert "provider running" in heartbeat and "phase implement (implementer)" in heartbeat
    assert "cto-harness: r1-string-slugify [case]" in heartbeat
    # Phase changes are lines of their own; no terminal control sequence off a terminal.
    text = stream.getvalue()
    for phase in ("implement (implementer)", "verify (verifier)", "close (closer)"):
        assert f": phase {phase}" in text
    assert "\x1b" not in text
    # Shown, never recorded: the bundle's events are the harness's and the provider's own.
    events = (result.run_dir / "events.normalized.jsonl").read_text()
    assert "still running" not in events


def test_a_terminal_gets_one_redrawn_line_with_the_phase_and_the_tool_call(
        case_repo, standin, case_home, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runs = tmp_path / "runs"
    env = base_env(case_home, runs, standin("wait-go"))
    master, slave = pty.openpty()
    # A terminal wide enough for the whole line (a narrower one gets it cut at its width).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    proc = subprocess.Popen(
        [str(case_repo / "harness" / "evals" / "run-case.sh"), "r1-string-slugify",
         "--engine", "case"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=slave)
    os.close(slave)
    screen = Recorder()

    def drain() -> None:  # the terminal: everything the run writes to it
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other end is gone
                return
            if not data:
                return
            screen.write(data.decode("utf-8", "replace"))

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        shown = screen.wait_for("phase implement (implementer)", "last tool bash: while [ ! -e")
        if shown:
            _say_go(runs)
        else:
            proc.kill()
        proc.wait(timeout=WAIT_SECONDS)
    finally:
        reader.join(timeout=10)
        os.close(master)
    assert shown, screen.getvalue()[-3000:]
    assert proc.returncode == 0, screen.getvalue()[-3000:]
    text = screen.getvalue()
    # The live line is redrawn in place (cursor up, clear), never a heartbeat's new lines.
    assert "\x1b[1F\x1b[J" in text and "(still running)" not in text
    live = [part for part in text.split("\x1b[1F\x1b[J") if "last tool bash" in part]
    assert live and "provider running" in live[0] and "phase implement" in live[0]
    assert "verdict PASS" in text
