"""Where Ctrl-C and SIGTERM may cut a run short: only while its stages run.

A signal raised at an arbitrary bytecode can land anywhere: between creating the run folder and
the `try` that seals it, inside an `except` handler, while the sandbox closes or the bundle is
sealed, each time leaving a folder without a report. So a run installs its own handler, which
raises `Interrupted` only while the gate is open (the stages: launch, diff, verification...) and
otherwise only remembers the signal. Once the bundle is whole and the previous handlers are back,
a remembered signal is sent again, so the caller (the CLI, a suite worker) still sees it. No
signal can leave a half bundle, by construction, not by shrinking windows.

Python swallows an exception raised where it cannot propagate: in an at-fork hook (logging's
runs in the parent after every child is started, and a signal that comes during the `fork` is
handled there), a `__del__`, a weakref callback. The stages would go on as if no signal had come
(a provider left to run to its time limit, a run that ends `pass`). Such an exception reaches
`sys.unraisablehook`: the gate's own hook takes its `Interrupted` back and has the signal sent
again from a thread, so that it raises in the stages' own code; if the stretch ends first, it
raises there.

The stages' own code may also catch `Interrupted` (it is an `Exception`): a step that turns
whatever it catches into its own error, a fallback that drops it. So the gate remembers that it
fired, and the stretch then ends in `Interrupted` whatever came out of it: an interrupted run is
never an `error` or a `pass`, which a resumed suite would not run again.

Handlers can only be installed from the main thread; elsewhere (a thread of a library caller)
Python never raises a signal's exception anyway, and the gate does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import sys
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
        self._previous_unraisable: Any = None
        # The last `Interrupted` raised, and the signal of one Python swallowed, to be sent
        # again (claimed once, by the sending thread or by the end of the stretch).
        self._raised: tuple[Interrupted, int] | None = None
        self._resend: int | None = None
        # The signal that interrupted this stretch: whatever the stages' code (or a library's)
        # makes of the exception, the stretch ends in `Interrupted`.
        self._fired: int | None = None
        self._lock = threading.Lock()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._open:
            self._open = False  # one raise: a second signal while unwinding is only remembered
            interrupted = Interrupted(signal.Signals(signum).name)
            self._raised = (interrupted, signum)
            self._fired = self._fired or signum
            raise interrupted
        self._pending = self._pending or signum

    def _on_unraisable(self, unraisable: Any) -> None:
        raised = self._raised
        if raised is None or unraisable.exc_value is not raised[0]:
            self._previous_unraisable(unraisable)
            return
        # Swallowed where it was raised (see the module's docstring): the stages go on, so the
        # stretch is open again, and the signal comes again once this hook has returned (were it
        # handled in here, its exception would be swallowed once more).
        self._raised = None
        with self._lock:
            self._resend = raised[1]
        hook_left = threading.Event()
        threading.Thread(target=self._send_again, args=(hook_left,),
                         name="cto-harness-resend-signal", daemon=True).start()
        self._open = True
        hook_left.set()

    def _send_again(self, hook_left: threading.Event) -> None:
        hook_left.wait()
        with self._lock:
            signum, self._resend = self._resend, None
        if signum is not None:  # to the main thread: one it blocks in is cut short
            signal.pthread_kill(threading.main_thread().ident or 0, signum)

    def __enter__(self) -> InterruptGate:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._on_signal)
            self._previous_unraisable = sys.unraisablehook
            sys.unraisablehook = self._on_unraisable
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self._previous_unraisable is not None:
            sys.unraisablehook = self._previous_unraisable
        if self._pending is not None:
            # The caller's own handling (an exception, the default action) takes over now.
            signal.raise_signal(self._pending)

    @contextlib.contextmanager
    def opened(self) -> Iterator[None]:
        """The one stretch a signal may interrupt; one already remembered raises at once.

        Once a signal has interrupted the stretch, the stretch ends in `Interrupted` whatever
        its code did with the exception: caught by an `except Exception` and turned into
        another error, or dropped (a library's fallback), the run is still interrupted, never
        an `error` or a `pass`. A swallowed signal not yet sent again raises here too."""
        if self._pending is not None:
            signum, self._pending = self._pending, None
            raise Interrupted(signal.Signals(signum).name)
        self._fired = None
        self._open = True
        try:
            yield
        except Interrupted:
            raise
        except BaseException as exc:
            if self._fired is None:
                raise
            raise Interrupted(signal.Signals(self._fired).name) from exc
        finally:
            self._open = False
            self._raised = None
            with self._lock:  # a swallowed signal not yet sent again: raised just below
                self._resend = None
        if self._fired is not None:
            raise Interrupted(signal.Signals(self._fired).name)
