"""The run's own event log and trace: normalized events and OpenTelemetry-shaped spans."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cto_harness.clock import iso, utc_now
from cto_harness.contracts import NormalizedEvent, Span


class EventLog:
    """Collects events and spans in memory; the bundle writer puts them on disk at the end."""

    def __init__(self, run_id: str, nonce: str) -> None:
        self.run_id = run_id
        self.nonce = nonce
        self.trace_id = secrets.token_hex(16)
        self.root_span_id = secrets.token_hex(8)
        self.events: list[NormalizedEvent] = []
        self.spans: list[Span] = []

    def emit(
        self, type_: str, *, source: str = "harness", ts: str | None = None, **data: Any
    ) -> None:
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
