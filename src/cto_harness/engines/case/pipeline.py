"""Case's own pipeline outcome (`pipeline_end`, and each `phase_end` that carries a result) in the
report's provider-neutral shape. Recorded, never trusted; shown beside the verdict."""

from __future__ import annotations

from typing import Any

from cto_harness.contracts import PhaseOutcome, ProviderOutcome

_CUT = 300


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= _CUT else text[:_CUT] + "…"


def pipeline_outcome(
    pipeline_end: dict[str, Any] | None, phase_results: list[dict[str, Any]], source: str | None
) -> ProviderOutcome:
    """`outcome` is None when Case left no `pipeline_end` (it did not finish, or wrote no log)."""
    outcome = (pipeline_end or {}).get("outcome")
    phases = []
    for row in phase_results:
        raw = row.get("result")
        result: dict[str, Any] = raw if isinstance(raw, dict) else {}
        phases.append(PhaseOutcome(
            phase=str(row.get("phase") or "?")[:60], agent=_text(row.get("agent")),
            outcome=_text(row.get("outcome")), status=_text(result.get("status")),
            summary=_text(result.get("summary")) or None, error=_text(result.get("error")),
        ))
    return ProviderOutcome(
        provider="Case", source=source, outcome=_text(outcome),
        failed_agent=_text((pipeline_end or {}).get("failedAgent")), phases=phases,
    )
