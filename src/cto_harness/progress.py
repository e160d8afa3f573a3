"""The one progress printer of long commands (a run, a suite, a provider build), on stderr.

Plain lines always; on a terminal, below them, a live block (one line per thing under way)
that is redrawn in place. A `None` stream prints nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TextIO


class Progress:
    def __init__(self, stream: TextIO | None, prefix: str = "") -> None:
        self.stream = stream
        self.prefix = prefix
        self.tty = bool(stream is not None and stream.isatty())
        self._shown = 0  # lines of the live block now on screen

    def _clear(self) -> None:
        if self.stream is not None and self.tty and self._shown:
            self.stream.write(f"\x1b[{self._shown}F\x1b[J")
            self._shown = 0

    def line(self, text: str) -> None:
        """A line that stays (above the live block)."""
        if self.stream is None:
            return
        self._clear()
        self.stream.write(f"{self.prefix}{text}\n")
        self.stream.flush()

    def live(self, lines: Sequence[str]) -> None:
        """Replace the live block (terminals only: elsewhere it would only repeat itself)."""
        if self.stream is None or not self.tty:
            return
        self._clear()
        self.stream.write("".join(f"{line}\n" for line in lines))
        self.stream.flush()
        self._shown = len(lines)

    def end(self) -> None:
        self._clear()
        if self.stream is not None:
            self.stream.flush()

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[None]:
        """One line when the step ends: `<label>: ok|failed (<seconds>s)`."""
        started = time.monotonic()
        outcome = "failed"
        try:
            yield
            outcome = "ok"
        finally:
            self.line(f"{label}: {outcome} ({time.monotonic() - started:.2f}s)")


class RunProgress:
    """The live view of one run on stderr (a `RunObserver`, core/live.py): the harness's stage,
    the provider's current phase and its last tool call. On a terminal one line, redrawn as
    things happen and every `redraw` seconds; elsewhere a line when the provider's phase
    changes and a heartbeat every `interval` seconds. Provider text is shown inert and short."""

    def __init__(self, stream: TextIO | None, label: str, *, interval: float = 30.0,
                 redraw: float = 1.0) -> None:
        self.out = Progress(stream)
        self.label = label
        self.interval = interval if not self.out.tty else redraw
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._step = "starting"
        self._phase: str | None = None
        self._tool: str | None = None
        self._tool_at = 0.0

    def __enter__(self) -> RunProgress:
        if self.out.stream is not None:
            self._thread = threading.Thread(target=self._tick, name="cto-harness-progress",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self.out.end()

    # --- RunObserver -------------------------------------------------------------------------

    def step(self, name: str) -> None:
        with self._lock:
            self._step = name
            self._show()

    def harness_event(self, type_: str, data: Mapping[str, Any]) -> None:
        if type_ == "provider.process.started":
            self.step("provider running")
        elif type_ == "provider.process.exited":
            self.step("provider exited")

    def provider_event(self, event: Any) -> None:
        data: Mapping[str, Any] = event.data
        with self._lock:
            if event.type == "provider.phase.started":
                agent = f" ({_short(data.get('agent'), 30)})" if data.get("agent") else ""
                self._phase = f"{_short(data.get('phase'), 30)}{agent}"
                self.out.line(f"{self._head()}: phase {self._phase}")
            elif event.type == "provider.tool.started":
                self._tool = _tool_text(data)
                self._tool_at = time.monotonic()
            elif event.type == "provider.pipeline.ended":
                self._phase = f"pipeline {_short(data.get('outcome'), 30)}"
            self._show()

    # --- output --------------------------------------------------------------------------------

    def _head(self) -> str:
        return f"cto-harness: {self.label} {_clock(time.monotonic() - self._started)}"

    def status(self) -> str:
        """The one line: where the run is, the provider's phase and its last tool call."""
        parts = [self._head(), self._step]
        if self._phase:
            parts.append(f"phase {self._phase}")
        if self._tool:
            ago = _clock(time.monotonic() - self._tool_at)
            parts.append(f"last tool {self._tool} ({ago} ago)")
        return " · ".join(parts)

    def _show(self) -> None:
        if self.out.tty:
            from cto_harness.inert import fit_width

            self.out.live([fit_width(self.status(), max(_columns(self.out.stream) - 1, 20))])

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if self.out.tty:
                    self._show()
                else:
                    self.out.line(f"{self.status()} (still running)")


def _columns(stream: TextIO | None) -> int:
    """The width of the terminal `stream` is (stdout may be a pipe while stderr is not)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or 100  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        return 100


def _short(value: object, limit: int) -> str:
    from cto_harness.inert import inert

    text = inert(str(value))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _tool_text(data: Mapping[str, Any]) -> str:
    """`bash: git commit -m …`: the tool's name and the start of what it was asked."""
    name = _short(data.get("tool") or "?", 30)
    args = data.get("args")
    if isinstance(args, str):
        with contextlib.suppress(ValueError, RecursionError):
            args = json.loads(args)
    if isinstance(args, dict):
        args = next((args[k] for k in ("command", "path", "file_path", "pattern") if k in args),
                    json.dumps(args))
    return f"{name}: {_short(args, 60)}" if args else name


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
