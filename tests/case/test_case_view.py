"""The viewer on a real Case-engine bundle (the admitted stand-in, the users' command): the
provider's own event log, its phases and tool calls, the same-run baseline's own page, and the
admission as this machine's registry records it."""

from __future__ import annotations

from pathlib import Path

import pytest

from case_helpers import base_env, run_case
from cto_harness.viewer.site import build_site

pytestmark = pytest.mark.slow


def test_a_case_run_page_shows_the_provider_log_baseline_and_admission(
        case_repo, standin, case_home, tmp_path: Path,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    run = run_case(case_repo, base_env(case_home, tmp_path / "runs", standin("normal")))
    assert run.report["verdict"] == "pass", run.report["blockers"]
    monkeypatch.setenv("CTO_HARNESS_HOME", str(case_home))  # its key and its registry
    site = build_site([run.run_dir], tmp_path / "view" / "run.html")
    assert site.verified
    assert [p.name for p in site.pages] == ["run-baseline.html", "run.html"]
    html = site.main.read_text()
    assert 'data-verified="true"' in html
    assert "backend/case-events.jsonl" in html  # the provider's own log, not the fake's
    assert "provider.phase." in html and "tool_start" in html
    assert 'id="baseline-link"' in html and 'href="run-baseline.html"' in html
    assert "from this machine&#39;s admission registry" in html
    assert run.report["provider"]["sha256"] in html and ">built<" in html
    baseline = site.pages[0].read_text()
    assert "same-run baseline" in baseline and 'data-verified="true"' in baseline
    assert "backend/fake-events.jsonl" in baseline
