"""The run's own event log and trace: normalized events and OpenTelemetry-shaped spans."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from cto_harness.clock import iso, utc_now
from cto_harness.contracts import NormalizedEvent, Span


class EventObserver(Protocol):
    """Told of the harness's steps as they happen (a live progress line; `core/live.py`)."""

    def step(self, name: str) -> None:
        """A harness stage began (`gates`, `workspace.prepare`, `verification`, ...)."""

    def harness_event(self, type_: str, data: Mapping[str, Any]) -> None:
        """The harness recorded an event (`provider.process.started`, ...)."""


class EventLog:
    """Collects events and spans in memory; the bundle writer puts them on disk at the end.
    An `observer` is told of each as it happens (never able to disturb the run)."""

    def __init__(self, run_id: str, nonce: str, observer: EventObserver | None = None) -> None:
        self.run_id = run_id
        self.nonce = nonce
        self.trace_id = secrets.token_hex(16)
        self.root_span_id = secrets.token_hex(8)
        self.events: list[NormalizedEvent] = []
        self.spans: list[Span] = []
        self.observer = observer

    def _tell(self, method: str, *args: Any) -> None:
        if self.observer is not None:
            # A progress display must never break a run.
            with contextlib.suppress(Exception):
                getattr(self.observer, method)(*args)

    def emit(
        self, type_: str, *, source: str = "harness", ts: str | None = None, **data: Any
    ) -> None:
        self.record(type_, data, source=source, ts=ts)

    def record(self, type_: str, data: dict[str, Any], *, source: str = "harness",
               ts: str | None = None) -> None:
        """`emit` with the data as one mapping: its keys are the provider's to choose (a
        `source` or `type_` among them), so they are never spread into keyword arguments."""
        self.events.append(
            NormalizedEvent(
                run_id=self.run_id,
                nonce=self.nonce,
                seq=len(self.events) + 1,
                ts=ts or iso(utc_now()),
                source=source,
                type=type_,
                data=data,
            )
        )
        self._tell("harness_event", type_, data)

    def add_span(
        self,
        name: str,
        start: str,
        end: str,
        *,
        parent: str | None = None,
        status: str = "ok",
        span_id: str | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> str:
        span_id = span_id or secrets.token_hex(8)
        self.spans.append(
            Span(
                trace_id=self.trace_id,
                span_id=span_id,
                parent_span_id=parent if parent is not None else self.root_span_id,
                name=name,
                start_time=start,
                end_time=end,
                status=status,
                attributes={**(attributes or {}), "cto.run_id": self.run_id,
                            "cto.nonce": self.nonce},
            )
        )
        return span_id

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[dict[str, Any]]:
        """Time a block as a child of the run span; the block may add attributes to the dict."""
        start = iso(utc_now())
        extra: dict[str, Any] = {}
        status = "ok"
        self._tell("step", name)
        try:
            yield extra
        except BaseException:
            status = "error"
            raise
        finally:
            self.add_span(name, start, iso(utc_now()), status=status,
                          attributes={**attributes, **extra})

    def close_root(self, start: str, end: str, status: str, **attributes: Any) -> None:
        # Closing again (a second sealing attempt) replaces the root span, never adds one.
        self.spans = [s for s in self.spans if s.span_id != self.root_span_id]
        self.spans.insert(
            0,
            Span(
                trace_id=self.trace_id,
                span_id=self.root_span_id,
                parent_span_id=None,
                name="cto-harness.run",
                start_time=start,
                end_time=end,
                status=status,
                attributes={**attributes, "cto.run_id": self.run_id, "cto.nonce": self.nonce},
            ),
        )
