"""The three ways a command can stop early, each mapped to a contract exit code."""

from __future__ import annotations

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_BLOCKED = 2
EXIT_ERROR = 3
EXIT_USAGE = 64


class HarnessError(Exception):
    """A fault of the harness itself (exit 3); a run still leaves a bundle with verdict `error`."""


class UsageError(HarnessError):
    """The caller asked for something malformed (exit 64, one line on stderr, nothing written)."""


class Blocked(HarnessError):
    """A fail-closed gate refused to go on. `code` is a contract blocker code."""

    def __init__(self, code: str, message: str, *, marker: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        # Name of a marker file under backend/ (DESIGN section 7), when this gate has one.
        self.marker = marker


class Interrupted(HarnessError):
    """SIGTERM or Ctrl-C arrived while a run was under way."""
