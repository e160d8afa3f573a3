"""The run's timeline: the harness's phases and the provider's phases and tool calls as spans
(`trace.jsonl`), and the provider's own event log (`backend/case-events.jsonl`, or the fake's
`backend/fake-events.jsonl`) as a list of steps. Provider timestamps are the provider's word."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cto_harness.inert import inert, read_jsonl

PROVIDER_LOGS = ("backend/case-events.jsonl", "backend/fake-events.jsonl")
_EXCERPT = 300


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


@dataclass(frozen=True)
class SpanRow:
    name: str
    depth: int
    start_ms: float
    duration_ms: float
    status: str
    source: str  # harness or provider
    detail: str


@dataclass(frozen=True)
class StepRow:
    offset_ms: float | None
    event: str
    where: str
    detail: str
    is_error: bool


@dataclass(frozen=True)
class Timeline:
    spans: list[SpanRow] = field(default_factory=list)
    total_ms: float = 0.0
    steps: list[StepRow] = field(default_factory=list)
    provider_log: str | None = None
    unreadable_lines: int = 0


def _excerpt(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = inert(text)
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…"


def _spans(root: Path) -> tuple[list[SpanRow], float, datetime | None, int]:
    rows, bad = read_jsonl(root / "trace.jsonl")
    spans = [r for r in rows if parse_time(r.get("start_time")) and parse_time(r.get("end_time"))]
    if not spans:
        return [], 0.0, None, bad
    starts = [parse_time(s["start_time"]) for s in spans]
    origin = min(s for s in starts if s is not None)
    by_id = {s.get("span_id"): s for s in spans}

    def depth(span: dict[str, Any]) -> int:
        level, seen = 0, set()
        parent = span.get("parent_span_id")
        while parent in by_id and parent not in seen and level < 20:
            seen.add(parent)
            level += 1
            parent = by_id[parent].get("parent_span_id")
        return level

    result = []
    def order(span: dict[str, Any]) -> tuple[Any, ...]:
        start, end = parse_time(span["start_time"]), parse_time(span["end_time"])
        assert start is not None and end is not None
        return (start, depth(span), start - end)  # at one start, the enclosing span first

    for span in sorted(spans, key=order):
        start, end = parse_time(span["start_time"]), parse_time(span["end_time"])
        assert start is not None and end is not None
        name = str(span.get("name", "?"))
        attributes = span.get("attributes") if isinstance(span.get("attributes"), dict) else {}
        shown = {k: v for k, v in attributes.items() if not str(k).startswith("cto.")}
        result.append(SpanRow(
            name=name, depth=depth(span),
            start_ms=(start - origin).total_seconds() * 1000,
            duration_ms=max((end - start).total_seconds() * 1000, 0.0),
            status=str(span.get("status", "unset")),
            source="provider" if name.startswith("provider.") and name != "provider.process"
            else "harness",
            detail=_excerpt(shown) if shown else "",
        ))
    total = max((r.start_ms + r.duration_ms for r in result), default=0.0)
    return result, total, origin, bad


def _step(row: dict[str, Any], origin: datetime | None) -> StepRow:
    moment = parse_time(row.get("ts"))
    offset = (moment - origin).total_seconds() * 1000 if moment and origin else None
    event = str(row.get("event", "?"))
    where = " / ".join(str(row[k]) for k in ("phase", "agent") if row.get(k))
    if event == "tool_start":
        detail = f"{row.get('tool', '?')} {_excerpt(row.get('args', ''))}"
    elif event == "tool_end":
        duration = f" in {row['durationMs']} ms" if row.get("durationMs") is not None else ""
        state = "error" if row.get("isError") else "ok"
        detail = f"{row.get('tool', '?')} {state}{duration}"
        if row.get("result"):
            detail += f": {_excerpt(row['result'])}"
    elif event in ("phase_end", "pipeline_end"):
        detail = f"outcome {row.get('outcome', '?')}"
        if row.get("failedAgent"):
            detail += f", failed agent {row['failedAgent']}"
    elif event == "status_changed":
        detail = f"{row.get('from', '?')} → {row.get('to', '?')}"
    else:
        rest = {k: v for k, v in row.items()
                if k not in ("event", "ts", "sequence", "runId", "plan", "phase", "agent")}
        detail = _excerpt(rest) if rest else ""
    is_error = bool(row.get("isError")) or row.get("outcome") == "failed"
    return StepRow(offset, event, where, detail, is_error)


def build(root: Path) -> Timeline:
    spans, total, origin, bad = _spans(root)
    for rel in PROVIDER_LOGS:
        path = root / rel
        if path.is_file() and not path.is_symlink():
            rows, unreadable = read_jsonl(path)
            return Timeline(spans, total, [_step(r, origin) for r in rows], rel, bad + unreadable)
    return Timeline(spans, total, [], None, bad)
