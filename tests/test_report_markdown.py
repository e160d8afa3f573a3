"""report.md: which model endpoint answered and the provider's own outcome come first, any
disagreement with the verdict is named, and everything the provider wrote stays inert text."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from conftest import CaseFactory
from cto_harness.contracts import (
    ChangedFile,
    DiffStats,
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
from cto_harness.core.run import execute_run
from cto_harness.engines.case.engine import write_task_layout
from cto_harness.engines.case.inputs import make_task
from cto_harness.errors import Blocked
from cto_harness.evidence.bundle import render_markdown
from cto_harness.evidence.diffstat import diff_stats
from cto_harness.evidence.markdown import block, inline
from cto_harness.evidence.verify import verify_bundle
from cto_harness.inert import code_span, markdown
from cto_harness.settings import Settings
from markdown_helpers import LINK, assert_links_resolve, split_fences

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
    # A word outside the closed set is never agreement, whatever the verdict: "completed" with
    # an invisible mark after it, another case, another word.
    ("completed\u034f", "fail", None, "provider_outcome_unknown"),
    ("COMPLETED", "fail", None, "provider_outcome_unknown"),
    ("done", "pass", None, "provider_outcome_unknown"),
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
    assert head[2].startswith("**Why:** ")  # the verdict's one-line reason, right under it
    assert "Model endpoint: SCRIPTED" in head[4] and "not what a live model would do" in head[4]
    outcome = next(line for line in head if "own outcome" in line)
    assert "pipeline **failed** at closer" in outcome
    assert "disagrees with the verdict" in outcome and "provider_failed_harness_passed" in outcome


def test_replay_and_live_are_named_too() -> None:
    replay = _report(model=ModelInfo(endpoint_kind="replay", endpoint=ModelEndpointInfo(
        mode="replay", cassette_sha256="ab" * 32)))
    assert "Model endpoint: REPLAY" in render_markdown(replay).splitlines()[4]
    live = _report(model=ModelInfo(provider="p", model="m", endpoint_kind="live"))
    assert "Model endpoint: **LIVE**" in render_markdown(live).splitlines()[4]
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
    outside, fences = split_fences(text)
    assert "<script>" not in outside and "<img" not in outside
    # The only links are the harness's own, to the bundle's files by their plain names.
    assert re.findall(r"\]\(", outside) and all(
        re.fullmatch(r"\[([A-Za-z0-9._/-]+)\]\(\1\)", link)
        for link in re.findall(r"\[[^\]]*\]\([^)]*\)", outside))
    assert len(re.findall(r"\]\(", outside)) == len(re.findall(r"\[[^\]]*\]\([^)]*\)", outside))
    assert "# injected" not in outside
    assert "&lt;script&gt;alert\\(1\\)" in outside  # the title, shown escaped
    # Inside, each block is opened by a fence longer than any backtick run it holds.
    assert fences and all(len(fence) > max((len(r) for r in re.findall(r"`+", inner)),
                                            default=0) for fence, inner in fences)
    assert any("<img src=x" in inner for _fence, inner in fences)  # shown, inert
    assert any("# injected heading" in inner for _fence, inner in fences)


def test_inline_and_block_escaping() -> None:
    # A control character is a visible token, never dropped (a hidden character would be).
    assert inline("a\nb\r\tc") == "a\u2424b\u240d\u2409c"
    # No autolink can form: the `.` of www., the `:` of a scheme and the `@` of an address.
    assert inline("see www.evil.example or https://e.example or a@evil.example") == \
        "see www\\.evil\\.example or https\\://e\\.example or a\\@evil\\.example"
    assert inline("completed\u034f") == "completed\u27e8U+034F\u27e9"
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


# --- report.md of real bundles: reason first, task, diff stats, failing tests, links ------------

WRONG = {"fake/solution/slugkit/text.py": "def slugify(value):\n    return value.lower()\n"}


def _bundles(case_factory: CaseFactory) -> dict[str, Path]:
    root = case_factory("wrong-slugify", files=WRONG)
    env = {**os.environ, "CTO_HARNESS_ALLOW_CASE": "1", "CTO_HARNESS_CASE_STAGE": "2"}
    settings = Settings.from_env(env)
    return {
        "pass": execute_run("r1-string-slugify", harness_root=root, settings=settings).run_dir,
        "fail": execute_run("wrong-slugify", harness_root=root, settings=settings).run_dir,
        "blocked": execute_run("r1-string-slugify", "case", harness_root=root,
                               settings=settings, environ=env).run_dir,
    }


def test_every_link_of_report_md_names_a_file_of_its_bundle(case_factory: CaseFactory) -> None:
    for verdict, run_dir in _bundles(case_factory).items():
        text = (run_dir / "report.md").read_text()
        outside, _fences = split_fences(text)
        targets = {target for _label, target in LINK.findall(outside)}
        assert {"patch.diff", "test.log", "report.json", "artifacts.sha256",
                "evidence.dsse.json"} <= targets, verdict
        # Every file of the bundle is reachable from the page (the baseline's through its own).
        assert_links_resolve(run_dir)
        # Paths inside the run folder are shown relative to it.
        assert str(run_dir) not in text, verdict
        verify_bundle(run_dir)


def test_report_md_leads_with_the_verdict_why_task_and_change(case_factory: CaseFactory) -> None:
    bundles = _bundles(case_factory)
    failing = (bundles["fail"] / "report.md").read_text()
    lines = failing.splitlines()
    assert lines[0] == "# cto-harness run wrong-slugify — **FAIL**"
    assert lines[2].startswith("**Why:** the harness") and "test\\_" in lines[2]
    sections = [line for line in lines if line.startswith("## ")]
    assert sections[:3] == ["## Task", "## Changes", "## Verification (run by the harness)"]
    assert "Implement it: lower-case the text" in failing  # the task as given
    # The change in numbers, counted like git's own --numstat of the same patch.
    numstat = subprocess.run(["git", "apply", "--numstat", str(bundles["fail"] / "patch.diff")],
                             capture_output=True, text=True, check=True).stdout.split()
    added, deleted = numstat[0], numstat[1]
    assert f"1 file changed, +{added} -{deleted} lines" in failing
    report = json.loads((bundles["fail"] / "report.json").read_text())
    assert report["diff_stats"] == {"files": 1, "additions": int(added),
                                    "deletions": int(deleted), "binary_files": 0}
    # The failing tests by name, as the harness's driver reported them.
    failed = [t["id"] for t in report["verification"]["tests"] if t["outcome"] != "passed"]
    assert failed and all(markdown(t) in failing for t in failed)
    assert "- failing tests (" in failing
    blocked = (bundles["blocked"] / "report.md").read_text()
    assert blocked.splitlines()[2].startswith("**Why:** provider\\_unavailable")
    assert "None was given to the provider: the run stopped before launch" in blocked


def test_diff_stats_count_only_hunk_lines_as_git_does() -> None:
    patch = (
        "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,3 @@\n"
        " keep\n--- a removed line that reads like a header\n+++ an added one\n"
        "\\ No newline at end of file\n"
        "diff --git a/img.png b/img.png\nnew file mode 100644\nBinary files /dev/null and "
        "b/img.png differ\n"
    )
    assert diff_stats(patch) == DiffStats(files=2, additions=1, deletions=1, binary_files=1)
    assert diff_stats(b"") == DiffStats()
    # A line break Python knows but git does not (U+2028, a form feed) ends no hunk.
    tricky = ("diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1 +1,4 @@\n-a\n"
              "+# note:\u2028x\n+b\x0cc\n+d\n+e\n").encode()
    assert diff_stats(tricky) == DiffStats(files=1, additions=4, deletions=1)


def test_diff_stats_hold_one_line_at_a_time_whatever_the_patch() -> None:
    # A provider's file of two-byte lines: 3 MB of patch, a million lines. A list of the lines
    # cost ~25 bytes a patch byte (75 MB here; 37 GiB for the patch of one 1 GiB file).
    patch = b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -0,0 +1 @@\n" + b"+a\n" * 1_000_000
    tracemalloc.start()
    try:
        stats = diff_stats(patch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stats == DiffStats(files=1, additions=1_000_000)
    assert peak < len(patch) // 10


def test_paths_inside_the_run_folder_are_shown_relative_to_it() -> None:
    from cto_harness.contracts import Blocker

    report = _report(
        verdict="blocked", run_dir="/runs/r",
        blockers=[Blocker(code="provider_timeout",
                          message="killed; see /runs/r/backend/provider-timeout.txt")],
        command=["/runs/r/private/bin/ca", "run", "--task",
                 "/runs/r/workspace/.case/tasks/active/t.task.json", "--mode", "unattended"])
    text = render_markdown(report)
    assert "/runs/r" not in text
    assert "killed; see backend/provider-timeout\\.txt" in text
    assert "`private/bin/ca run --task workspace/.case/tasks/active/t.task.json --mode " \
        "unattended`" in text
    assert code_span("a `b` c") == "``a `b` c``" and code_span("`x") == "`` `x ``"
    assert code_span("x\ny\x1b") == "`x␤y␛`"
    assert "`private/` held the provider's hashed copy" in text  # removed after the run: said
