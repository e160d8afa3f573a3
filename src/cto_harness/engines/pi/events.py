"""pi's own account of a run: the JSON lines `pi --mode json` prints (one session header, then
agent, turn, message and tool events), mapped to typed provider events and spans. Recorded,
never trusted; streaming deltas (`message_update`, `tool_execution_update`) are left out.

pi's events carry no timestamps: each is stamped with the time the harness read the log, in
order (the spans show structure and counts, not durations).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from cto_harness.contracts import ProviderOutcome
from cto_harness.engines.base import ProviderEvent, ProviderSpan

MAX_LOG_BYTES = 32 * 1024 * 1024
_TEXT_CAP = 2000
_SKIPPED = {"message_update", "tool_execution_update", "queue_update"}
# What of pi's account is kept: far more than a 900-second run makes, far less than the 32 MiB
# log holds in 20-byte lines (each an event and a span: gigabytes in memory, and a trace past
# what `verify` reads). The rest is counted (`provider_records_left_out`).
MAX_EVENTS, MAX_SPANS = 20_000, 10_000
_RETRY_AND_COMPACTION = {"auto_retry_start", "auto_retry_end", "compaction_start",
                         "compaction_end"}


@dataclass(frozen=True)
class PiAccount:
    events: tuple[ProviderEvent, ...]
    spans: tuple[ProviderSpan, ...]
    outcome: ProviderOutcome
    claims: Mapping[str, Any]


class LogRows:
    """The JSON objects of pi's log (its first MAX_LOG_BYTES), read one line at a time: a log of
    a million tiny lines held whole, then parsed whole, cost the harness ~700 MiB. `bad` counts
    the lines that were not one, once the rows have been iterated."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bad = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.path.is_symlink() or not self.path.is_file():
            return
        left = MAX_LOG_BYTES
        with open(self.path, "rb") as handle:
            while left > 0 and (line := handle.readline(left)):
                left -= len(line)
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError):
                    # RecursionError: pi prints the model's tool-call arguments as it got them,
                    # so a model can nest a line deeper than the parser's recursion limit.
                    self.bad += 1
                    continue
                if isinstance(row, dict) and isinstance(row.get("type"), str):
                    yield row
                else:
                    self.bad += 1


def _scalar(value: Any, cap: int) -> str:
    """A field pi prints as text, as bounded text: a string cut to `cap`, a number or boolean
    written out. Anything else is "": a list or object is the provider's to size and nest (a
    forged line may put one anywhere), and `str()` of it is unbounded work and text."""
    if isinstance(value, str):
        return value[:cap]
    if isinstance(value, bool | int | float):
        return str(value)[:cap]
    return ""


def _text_of(message: Any) -> str:
    """The text parts of an assistant message."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content[:_TEXT_CAP]
    if not isinstance(content, list):  # a number or an object is no list of parts
        return ""
    parts = [part.get("text", "") for part in content
             if isinstance(part, dict) and part.get("type") == "text"]
    return "\n".join(p for p in parts if isinstance(p, str))[:_TEXT_CAP]


def live_event(row: Mapping[str, Any]) -> ProviderEvent | None:
    """One line of pi's output as it is printed, for the live progress line (never recorded):
    each tool call as it starts, and the end of the agent's work."""
    kind = row.get("type")
    if kind == "tool_execution_start":
        return ProviderEvent("", "provider.tool.started",
                             {"tool": _scalar(row.get("toolName"), 80), "args": row.get("args")})
    if kind == "agent_end":
        return ProviderEvent("", "provider.pipeline.ended", {"outcome": "ended"})
    return None


T = TypeVar("T")


@dataclass
class _Capped(Generic[T]):
    """A list that keeps its first `cap` items and counts the others."""

    cap: int
    items: list[T] = field(default_factory=list)
    left_out: int = 0

    def append(self, item: T) -> None:
        if len(self.items) < self.cap:
            self.items.append(item)
        else:
            self.left_out += 1


def account(rows: Iterable[dict[str, Any]], ts: str, source: str) -> PiAccount:
    events: _Capped[ProviderEvent] = _Capped(MAX_EVENTS)
    spans: _Capped[ProviderSpan] = _Capped(MAX_SPANS)
    turns = tools = tool_errors = 0
    open_tools: dict[str, str] = {}
    stop_reason: str | None = None
    error: str | None = None
    final_text = ""
    ended = False
    for row in rows:
        kind = row["type"]
        if kind in _SKIPPED:
            continue
        if kind == "session":
            events.append(ProviderEvent(ts, "provider.session.started",
                                        {"id": _scalar(row.get("id"), 80),
                                         "version": _scalar(row.get("version"), 40) or None}))
        elif kind == "agent_start":
            events.append(ProviderEvent(ts, "provider.pipeline.started", {}))
        elif kind == "turn_start":
            turns += 1
            events.append(ProviderEvent(ts, "provider.turn.started", {"turn": turns}))
        elif kind == "tool_execution_start":
            tools += 1
            name = _scalar(row.get("toolName"), 80)
            open_tools[_scalar(row.get("toolCallId", tools), 200)] = name
            events.append(ProviderEvent(ts, "provider.tool.started", {"tool": name}))
        elif kind == "tool_execution_end":
            name = open_tools.pop(_scalar(row.get("toolCallId"), 200),
                                  _scalar(row.get("toolName"), 80))
            failed = bool(row.get("isError"))
            tool_errors += failed
            events.append(ProviderEvent(ts, "provider.tool.ended",
                                        {"tool": name[:80], "is_error": failed}))
            spans.append(ProviderSpan(key=f"tool-{tools}-{name}", name=f"pi.tool.{name}",
                                      start=ts, end=ts, status="error" if failed else "ok",
                                      parent_key=f"turn-{turns}" if turns else None,
                                      attributes={"tool": name}))
        elif kind == "message_end":
            message = row.get("message")
            if isinstance(message, dict) and message.get("role") == "assistant":
                stop_reason = _scalar(message.get("stopReason"), 40) or None
                if message.get("errorMessage"):
                    error = _scalar(message["errorMessage"], 500) or "(not text)"
                final_text = _text_of(message) or final_text
        elif kind == "turn_end":
            events.append(ProviderEvent(ts, "provider.turn.ended", {"turn": turns}))
            spans.append(ProviderSpan(key=f"turn-{turns}", name="pi.turn", start=ts, end=ts,
                                      attributes={"turn": turns}))
        elif kind == "agent_end":
            ended = True
        elif kind in _RETRY_AND_COMPACTION:  # named from a fixed list: the type is pi's text
            events.append(ProviderEvent(ts, f"provider.{kind.replace('_', '.')}", {}))
    failed = stop_reason in ("error", "aborted") or error is not None
    outcome = None
    if ended:
        outcome = "failed" if failed else "completed"
        events.items.append(ProviderEvent(ts, "provider.pipeline.ended",  # always kept
                                          {"outcome": outcome, "turns": turns, "tools": tools}))
    claims = {"event_log": source if ended or events.items else None, "turns": turns,
              "tool_calls": tools, "tool_errors": tool_errors, "stop_reason": stop_reason,
              "error": error, "final_text": final_text, "agent_ended": ended,
              "provider_records_left_out": events.left_out + spans.left_out}
    return PiAccount(events=tuple(events.items), spans=tuple(spans.items),
                     outcome=ProviderOutcome(outcome=outcome, source=source if ended else None),
                     claims=claims)
