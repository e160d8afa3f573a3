"""Case's own event log (`<workspace>/.case/<id>/events/run-*.jsonl`, also the fake's log shape)
mapped into normalized events and trace spans. Provider events are recorded, never trusted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cto_harness.engines.base import ProviderEvent, ProviderSpan

_EVENT_TYPES = {
    "pipeline_start": "provider.pipeline.started",
    "pipeline_end": "provider.pipeline.ended",
    "phase_start": "provider.phase.started",
    "phase_end": "provider.phase.ended",
    "tool_start": "provider.tool.started",
    "tool_end": "provider.tool.ended",
    "status_changed": "provider.status.changed",
    "revision_requested": "provider.revision.requested",
    "revision_budget_exhausted": "provider.revision.budget_exhausted",
}
_MAX_FIELD = 500


@dataclass
class MappedLog:
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    spans: list[dict[str, Any]] = field(default_factory=list)
    pipeline_end: dict[str, Any] | None = None
    phase_results: list[dict[str, Any]] = field(default_factory=list)
    unreadable_lines: int = 0


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_FIELD:
        return value[:_MAX_FIELD] + "…"
    return value


def live_event(row: Mapping[str, Any]) -> ProviderEvent | None:
    """One line of the log as it is written, for the live progress line (never recorded)."""
    kind = row.get("event")
    if not isinstance(kind, str) or kind not in _EVENT_TYPES:
        return None
    data = {k: _cut(v) for k, v in row.items() if k in ("phase", "agent", "tool", "args",
                                                       "outcome", "failedAgent")}
    return ProviderEvent(ts=str(row.get("ts", "")), type=_EVENT_TYPES[kind], data=data)


def map_events(rows: list[dict[str, Any]], *, fallback_ts: str) -> MappedLog:
    mapped = MappedLog()
    open_phases: dict[str, dict[str, Any]] = {}
    open_tools: dict[str, dict[str, Any]] = {}
    for row in rows:
        kind = str(row.get("event", "unknown"))
        ts = str(row.get("ts") or fallback_ts)
        data = {k: _cut(v) for k, v in row.items() if k not in ("event", "ts", "plan")}
        mapped.events.append((ts, _EVENT_TYPES.get(kind, f"provider.{kind}"), data))
        phase = str(row.get("phase", ""))
        if kind == "phase_start":
            open_phases[phase] = {"start": ts, "agent": row.get("agent")}
        elif kind == "phase_end":
            if "result" in row:
                mapped.phase_results.append(
                    {"phase": phase, "agent": row.get("agent"), "outcome": row.get("outcome"),
                     "result": row.get("result")}
                )
            started = open_phases.pop(phase, None)
            if started is not None:
                mapped.spans.append({
                    "name": f"provider.phase.{phase}", "start": started["start"], "end": ts,
                    "status": "error" if row.get("outcome") == "failed" else "ok",
                    "key": f"phase:{phase}", "parent_key": None,
                    "attributes": {"phase": phase, "agent": row.get("agent"),
                                   "outcome": row.get("outcome")},
                })
        elif kind == "tool_start":
            key = str(row.get("toolCallId") or f"{phase}:{row.get('tool')}:{row.get('sequence')}")
            open_tools[key] = {"start": ts, "tool": row.get("tool"), "phase": phase}
        elif kind == "tool_end":
            key = str(row.get("toolCallId") or "")
            started = open_tools.pop(key, None)
            if started is None and open_tools:
                # Logs without call ids: close the oldest open tool call of the same name.
                key = next(
                    (k for k, v in open_tools.items() if v["tool"] == row.get("tool")), ""
                )
                started = open_tools.pop(key, None)
            if started is not None:
                mapped.spans.append({
                    "name": f"provider.tool.{started['tool']}", "start": started["start"],
                    "end": ts,
                    "status": "error" if row.get("isError") else "ok",
                    "key": f"tool:{key}", "parent_key": f"phase:{started['phase']}",
                    "attributes": {"tool": started["tool"], "phase": started["phase"],
                                   "is_error": bool(row.get("isError"))},
                })
        elif kind == "pipeline_end":
            mapped.pipeline_end = {k: row.get(k) for k in ("outcome", "failedAgent") if k in row}
    return mapped


def typed(mapped: MappedLog) -> tuple[tuple[ProviderEvent, ...], tuple[ProviderSpan, ...]]:
    """The mapped log as the engine API's typed provider events and spans."""
    events = tuple(ProviderEvent(ts=ts, type=type_, data=data) for ts, type_, data in mapped.events)
    spans = tuple(
        ProviderSpan(key=str(s["key"]), name=str(s["name"]), start=str(s["start"]),
                     end=str(s["end"]), status=s.get("status", "ok"),
                     parent_key=s.get("parent_key"), attributes=dict(s.get("attributes", {})))
        for s in mapped.spans
    )
    return events, spans
