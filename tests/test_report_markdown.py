"""report.md: which model endpoint answered and the provider's own outcome come first, any
disagreement with the verdict is named, and everything the provider wrote stays inert text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cto_harness.contracts import (
    ChangedFile,
    ForbiddenAction,
    Freshness,
    LocalPullRequest,
    ModelEndpointInfo,
    ModelInfo,
    PhaseOutcome,
    ProviderInfo,
    ProviderOutcome,
    Report,
    Timing,
)
from cto_harness.core.outcome import judge_outcome
from cto_harness.engines.case.engine import write_task_layout
from cto_harness.engines.case.inputs import make_task
from cto_harness.errors import Blocked
from cto_harness.evidence.bundle import render_markdown
from cto_harness.evidence.markdown import block, inline

HOSTILE = "x <script>alert(1)</script> ![i](http://e.invalid/p.png) [l](javascript:a) | `c` **b**"


def _report(**fields: object) -> Report:
    base: dict[str, object] = dict(
        schema_version="1", harness_version="0", run_id="r", nonce="n", run_dir="/runs/r",
        case_id="c", engine="case", stage="2", verdict="pass", provider=ProviderInfo(name="case"),
        timing=Timing(started_at="t0", finished_at="t1", duration_ms=1),
        freshness=Freshness(run_id="r", nonce="n", started_at="t0", finished_at="t1"),
    )
    return Report(**(base | fields))  # type: ignore[arg-type]


def _outcome(outcome: str | None, failed: str | None = None) -> ProviderOutcome:
    return ProviderOutcome(provider="Case", outcome=outcome, failed_agent=failed,
                           phases=[PhaseOutcome(phase="close", agent="closer",
                                                outcome="failed", error=HOSTILE)])


@pytest.mark.parametrize("outcome, verdict, agrees, code", [
    ("completed", "pass", True, None),
    ("failed", "pass", False, "provider_failed_harness_passed"),
    ("completed", "fail", False, "provider_completed_harness_failed"),
    ("failed", "fail", True, None),
    ("failed", "blocked", None, None),
    (None, "pass", None, "provider_outcome_unknown"),
])
def test_the_outcome_is_judged_against_the_verdict(outcome: str | None, verdict: str,
                                                  agrees: bool | None, code: str | None) -> None:
    judged = judge_outcome(_outcome(outcome, "closer"), verdict)  # type: ignore[arg-type]
    assert (judged.agrees_with_verdict, judged.note_code) == (agrees, code)
    assert (judged.note is not None) == (code is not None)
    # An engine with no pipeline of its own that stated nothing gets no note.
    assert judge_outcome(ProviderOutcome(), verdict) == ProviderOutcome()  # type: ignore[arg-type]


def test_a_scripted_pass_whose_provider_failed_says_both_first() -> None:
    report = _report(
        model=ModelInfo(provider="anthropic", model="m", admitted=True, endpoint_kind="scripted",
                        endpoint=ModelEndpointInfo(mode="scripted", script_set="strict")),
        provider_outcome=judge_outcome(_outcome("failed", "closer"), "pass"),
    )
    head = render_markdown(report).splitlines()[:8]
    assert head[0].endswith("— **PASS**")
    assert "Model endpoint: SCRIPTED" in head[2] and "not what a live model would do" in head[2]
    outcome = next(line for line in head if "own outcome" in line)
    assert "pipeline **failed** at closer" in outcome
    assert "disagrees with the verdict" in outcome and "provider_failed_harness_passed" in outcome


def test_replay_and_live_are_named_too() -> None:
    replay = _report(model=ModelInfo(endpoint_kind="replay", endpoint=ModelEndpointInfo(
        mode="replay", cassette_sha256="ab" * 32)))
    assert "Model endpoint: REPLAY" in render_markdown(replay).splitlines()[2]
    live = _report(model=ModelInfo(provider="p", model="m", endpoint_kind="live"))
    assert "Model endpoint: **LIVE**" in render_markdown(live).splitlines()[2]
    fake = _report(engine="fake")
    assert "Model endpoint" not in render_markdown(fake)


def test_provider_written_text_stays_inert() -> None:
    body = "## Summary\n```\nbreak out\n```\n<img src=x onerror=alert(1)>\x1b[31mred\u202e"
    report = _report(
        verdict="fail",
        provider_outcome=judge_outcome(_outcome("failed", HOSTILE), "fail"),
        changed_files=[ChangedFile(path=f"a|b`c<d>.py{HOSTILE}", change="added", allowed=False)],
        forbidden_actions_attempted=[ForbiddenAction(action="gh", detail=f"gh api {HOSTILE}",
                                                     source="s")],
        pull_requests=[LocalPullRequest(number=1, url="https://pr.invalid/c/pull/1",
                                        title=HOSTILE, base="main", head=f"b{HOSTILE}",
                                        body_excerpt=body, verified=False,
                                        problem="its head commit is not on the local remote")],
        provider_claims={"last_stdout_line": "```\n# injected heading\n```"},
    )
    text = render_markdown(report)
    assert "\x1b" not in text and "\u202e" not in text
    # Outside fenced blocks, nothing can become HTML, a link, an image or a heading.
    outside, fences = _split_fences(text)
    assert "<script>" not in outside and "<img" not in outside and "](" not in outside
    assert "# injected" not in outside
    assert "&lt;script&gt;alert\\(1\\)" in outside  # the title, shown escaped
    # Inside, each block is opened by a fence longer than any backtick run it holds.
    assert fences and all(len(fence) > max((len(r) for r in re.findall(r"`+", inner)),
                                            default=0) for fence, inner in fences)
    assert any("<img src=x" in inner for _fence, inner in fences)  # shown, inert
    assert any("# injected heading" in inner for _fence, inner in fences)


def _split_fences(text: str) -> tuple[str, list[tuple[str, str]]]:
    outside, fences, lines = [], [], text.splitlines()
    i = 0
    while i < len(lines):
        opened = re.fullmatch(r"(`{3,})\w*", lines[i])
        if opened is None:
            outside.append(lines[i])
            i += 1
            continue
        fence, inner, i = opened.group(1), [], i + 1
        while i < len(lines) and lines[i] != fence:
            inner.append(lines[i])
            i += 1
        fences.append((fence, "\n".join(inner)))
        i += 1
    return "\n".join(outside), fences


def test_inline_and_block_escaping() -> None:
    assert inline("a\nb\r\tc") == "a b  c"
    assert inline("<b>&") == "&lt;b&gt;&amp;"
    assert inline("[x](y)") == "\\[x\\]\\(y\\)"
    assert inline("a" * 10, limit=4) == "aaaa…"
    lines = block("x ```` y", info="md")
    assert lines[0] == "`````md" and lines[-1] == "`````"


def test_the_task_layout_never_writes_through_what_is_there(tmp_path: Path) -> None:
    task = make_task("c", "run", "c", "2026-01-01T00:00:00Z")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    task_file, brief, active = write_task_layout(workspace, task, "brief\n")
    assert task_file == workspace / ".case" / "tasks" / "active" / f"{task.id}.task.json"
    assert brief.read_text() == "brief\n" and active.read_text() == f"{task.id}\n"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for planted in ("link", "dir"):
        target = tmp_path / f"ws-{planted}"
        target.mkdir()
        if planted == "link":
            (target / ".case").symlink_to(elsewhere)
        else:
            (target / ".case").mkdir()
        with pytest.raises(Blocked) as caught:
            write_task_layout(target, task, "brief\n")
        assert caught.value.code == "task_contract_invalid"
    assert list(elsewhere.iterdir()) == []
