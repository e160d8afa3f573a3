"""The one progress printer of long commands (a suite, a provider build), on stderr.

Plain lines always; on a terminal, below them, a live block (one line per thing under way)
that is redrawn in place. A `None` stream prints nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TextIO


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
