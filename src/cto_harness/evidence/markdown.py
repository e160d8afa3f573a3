"""report.md pieces that show provider-written text, kept inert by the one rule of `inert.py`.

Anything a provider wrote (a file name, a pull request title or body, an argv, its phase names)
is shown either as escaped inline text (`inline`: `inert.markdown`, cut to a length) or inside a
fenced block whose fence is longer than any run of backticks in the text (`block`), where
nothing is interpreted; either way every control or invisible character is a visible token.
"""

from __future__ import annotations

import re

from cto_harness.contracts import Report
from cto_harness.inert import inert, markdown


def inline(text: object, limit: int = 300) -> str:
    value = str(text)
    return markdown(value[:limit] + "…" if len(value) > limit else value)


def block(text: object, limit: int = 4000, info: str = "text") -> list[str]:
    value = inert(str(text).replace("\r\n", "\n").replace("\t", "    "), multiline=True)
    if len(value) > limit:
        value = value[:limit] + "\n…"
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{info}", *value.split("\n"), fence]


def endpoint_banner(report: Report) -> list[str]:
    """The first thing under the verdict: which kind of model answered. A scripted or replayed
    pass must never be mistaken for a live one."""
    kind = report.model.endpoint_kind
    if kind is None:
        return []
    endpoint = report.model.endpoint
    model = inline(f"{report.model.provider}/{report.model.model}")
    if kind == "scripted":
        which = f" (script set `{inline(endpoint.script_set)}`)" if endpoint and \
            endpoint.script_set else ""
        return [f"> **Model endpoint: SCRIPTED**{which} — a deterministic script played the "
                f"model ({model}); this run proves the harness and the provider's own machinery "
                "end to end, **not what a live model would do**.", ""]
    if kind == "replay":
        digest = endpoint.cassette_sha256[:16] if endpoint and endpoint.cassette_sha256 else "?"
        return [f"> **Model endpoint: REPLAY** — recorded answers replayed from a cassette "
                f"(sha256 `{digest}…`) for {model}; **not a live model**.", ""]
    recorded = " through the harness's recording proxy" if endpoint and \
        endpoint.mode == "record" else ""
    return [f"> Model endpoint: **LIVE** — {model}{recorded}.", ""]


def outcome_lines(report: Report) -> list[str]:
    """The provider's own outcome, right under the verdict, with any disagreement named."""
    outcome = report.provider_outcome
    if outcome.provider is None and outcome.outcome is None:
        return []  # an engine with no pipeline of its own, and nothing stated
    who = inline(outcome.provider or "the provider")
    state = f"pipeline **{inline(outcome.outcome or 'unknown')}**"
    if outcome.failed_agent:
        state += f" at {inline(outcome.failed_agent)}"
    if outcome.agrees_with_verdict is True:
        judged = " — agrees with the verdict."
    elif outcome.agrees_with_verdict is False:
        judged = f" — **disagrees with the verdict** (`{outcome.note_code}`)."
    else:
        judged = f" (`{outcome.note_code}`)." if outcome.note_code else "."
    lines = [f"**{who}'s own outcome** (recorded, not trusted): {state}{judged}"]
    if outcome.note:
        lines.append(f"> {inline(outcome.note, 600)}")
    if outcome.phases:
        phases = ", ".join(
            f"{inline(p.phase)} {inline(p.outcome or '?')}"
            + (f" ({inline(p.error, 120)})" if p.error else "")
            for p in outcome.phases
        )
        lines.append(f"- phases: {phases}")
    return [*lines, ""]


def pull_request_lines(report: Report) -> list[str]:
    if not report.pull_requests:
        return []
    lines = ["## Local pull requests", "",
             "Opened against the local bare remote `origin` through the harness's `gh` sink; "
             "nothing left this machine (`pr.invalid` never resolves).", ""]
    for pr in report.pull_requests:
        verified = "yes" if pr.verified else f"**no** ({inline(pr.problem)})"
        lines += [
            f"### \\#{pr.number}: {inline(pr.title)}",
            "",
            f"- URL: {inline(pr.url)}",
            f"- branch: {inline(pr.head)} → {inline(pr.base)}; head commit "
            f"{inline(pr.head_commit or 'unknown')}",
            f"- head commit found on the local remote: {verified}",
            f"- body (sha256 {inline(pr.body_sha256 or '?')}), first "
            f"{len(pr.body_excerpt)} characters:",
            "",
            *block(pr.body_excerpt, limit=1200, info="markdown"),
            "",
        ]
    return lines
