"""Where Ctrl-C and SIGTERM may cut a run short: only while its stages run.

A signal raised at an arbitrary bytecode can land anywhere: between creating the run folder and
the `try` that seals it, inside an `except` handler, while the sandbox closes or the bundle is
sealed, each time leaving a folder without a report. So a run installs its own handler, which
raises `Interrupted` only while the gate is open (the stages: launch, diff, verification...) and
otherwise only remembers the signal. Once the bundle is whole and the previous handlers are back,
a remembered signal is sent again, so the caller (the CLI, a suite worker) still sees it. No
signal can leave a half bundle, by construction, not by shrinking windows.

Handlers can only be installed from the main thread; elsewhere (a thread of a library caller)
Python never raises a signal's exception anyway, and the gate does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

from cto_harness.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptGate:
    """`with InterruptGate() as gate:` around a run; `with gate.opened():` around its stages."""

    def __init__(self) -> None:
        self._open = False
        self._pending: int | None = None  # a signal seen while closed, delivered on exit
        self._previous: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._open:
            self._open = False  # one raise: a second signal while unwinding is only remembered
            raise Interrupted(signal.Signals(signum).name)
        self._pending = self._pending or signum

    def __enter__(self) -> InterruptGate:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self._pending is not None:
            # The caller's own handling (an exception, the default action) takes over now.
            signal.raise_signal(self._pending)

    @contextlib.contextmanager
    def opened(self) -> Iterator[None]:
        """The one stretch a signal may interrupt; one already remembered raises at once. A
        signal that arrives as the stretch ends raises here, inside the caller's `try`."""
        if self._pending is not None:
            signum, self._pending = self._pending, None
            raise Interrupted(signal.Signals(signum).name)
        self._open = True
        try:
            yield
        finally:
            self._open = False
