"""What a person watching a long run is told while it goes on: each harness stage as it starts,
and the provider's phases and tool calls as its own event log is written (the engine says where:
`Engine.live_log`). Shown, never recorded: nothing here enters the bundle (`collect` reads the
log for that once the provider is gone), and whoever prints provider text makes it inert.

The log is the provider's to shape: it is opened by descriptors with no link followed (a link,
FIFO or device is never opened), read in bounded steps (a log that grows faster than it is read
is skipped forward to its end), and each line is parsed alone (a bad line is dropped).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from cto_harness.core.events import EventLog, EventObserver
from cto_harness.engines.base import LiveLog, ProviderEvent
from cto_harness.tree import files_in, open_file

POLL_SECONDS = 0.5
_READ_STEP = 1 << 20  # the most read from a log per poll
_KEEP_TAIL = 64 << 10  # what is kept of a backlog larger than one step: its end
_MAX_LINE = 64 << 10
_MAX_FILES = 8


@runtime_checkable
class RunObserver(EventObserver, Protocol):
    """Told of the run as it goes (from the pipeline's thread and the log reader's thread)."""

    def provider_event(self, event: ProviderEvent) -> None:
        """The provider's own log gained an event (mapped by the engine)."""


class _File:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.offset = 0
        self.partial = b""


class LiveTail:
    """Follows the log files of a `LiveLog` on a thread of its own until stopped."""

    def __init__(self, log: LiveLog, observer: RunObserver, poll: float = POLL_SECONDS) -> None:
        self.log = log
        self.observer = observer
        self.poll = poll
        self._files: dict[bytes, _File] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cto-harness-live-log",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join()
        try:
            self._read_all()  # what came after the last poll
        finally:
            for file in self._files.values():
                os.close(file.fd)
            self._files.clear()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            self._read_all()

    def _read_all(self) -> None:
        prefix, suffix = os.fsencode(self.log.prefix), os.fsencode(self.log.suffix)
        try:
            # Once full, only the files already open are read: the folder is not listed again.
            names = sorted(self._files) if len(self._files) >= _MAX_FILES else sorted(files_in(
                self.log.root, self.log.folder,
                keep=lambda n: n.startswith(prefix) and n.endswith(suffix)))
            for name in names:
                file = self._files.get(name)
                if file is None:
                    if len(self._files) >= _MAX_FILES:
                        continue
                    fd = open_file(self.log.root, os.fsencode(self.log.folder) + b"/" + name)
                    if fd is None:
                        continue
                    file = self._files[name] = _File(fd)
                self._read(file)
        except Exception:  # a live view must never disturb the run
            return

    def _read(self, file: _File) -> None:
        size = os.fstat(file.fd).st_size
        if size < file.offset:  # rewritten: start again
            file.offset, file.partial = 0, b""
        if size - file.offset > _READ_STEP:  # far behind: only the end matters now
            file.offset, file.partial = size - _KEEP_TAIL, b""
            skip_first = True
        else:
            skip_first = False
        data = os.pread(file.fd, min(size - file.offset, _READ_STEP), file.offset)
        file.offset += len(data)
        lines = (file.partial + data).split(b"\n")
        file.partial = lines.pop()
        if len(file.partial) > _MAX_LINE:
            file.partial = b""
        for line in lines[1:] if skip_first else lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            return
        if not isinstance(row, dict):
            return
        event = self.log.parse(row)
        if event is not None:
            self.observer.provider_event(event)


@contextlib.contextmanager
def tailing(log: LiveLog | None, observer: RunObserver | None) -> Iterator[None]:
    """Follow `log` for `observer` during the block (nothing when either is missing)."""
    if log is None or observer is None:
        yield
        return
    tail = LiveTail(log, observer)
    tail.start()
    try:
        yield
    finally:
        tail.stop()


def observer_of(events: EventLog) -> RunObserver | None:
    """The run's observer when it also takes the provider's events (a `RunObserver`)."""
    observer = events.observer
    return observer if isinstance(observer, RunObserver) else None
