"""The pages in a real browser (Chromium through Playwright): they load with no console error
and no network request, show what a lead needs (verdict, reason, diff, timeline, tests), link
between suite and run pages, mark tampered evidence unverified, and keep hostile strings inert.
Screenshots are kept in pytest's temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import expect

from browser_helpers import Tab
from cto_harness.viewer.serve import serving
from cto_harness.viewer.site import build_site, mounts_for
from viewer.conftest import Evidence, copy_bundle


def _open(tab: Tab, evidence: Evidence, folders: list[Path], out: Path) -> Path:
    site = build_site(folders, out, public_key=evidence.public_key)
    tab.page.goto(site.main.as_uri())
    return site.main


def _shot(tab: Tab, screenshots: Path, name: str) -> None:
    tab.page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
    assert (screenshots / f"{name}.png").stat().st_size > 10_000


def test_a_passing_run_page_shows_verdict_reason_diff_tests_and_timeline(
        evidence: Evidence, tab: Tab, tmp_path: Path, screenshots: Path) -> None:
    _open(tab, evidence, [evidence.passing], tmp_path / "run.html")
    page = tab.page
    expect(page.locator("#verification")).to_have_attribute("data-verified", "true")
    expect(page.locator("#verification")).to_contain_text("Verified")
    expect(page.locator("#verdict")).to_have_text("PASS")
    expect(page.locator("#reason")).to_contain_text("all 7 pass conditions held")
    expect(page.locator("#provider-outcome")).to_contain_text("completed")
    diff = page.locator("#diff")
    expect(diff).to_be_visible()
    expect(diff).to_contain_text('return "-".join(re.findall')
    assert diff.locator("span.gi").count() >= 2  # Pygments marked the inserted lines
    expect(page.locator("#task")).to_contain_text("Implement it: lower-case the text")
    expect(page.locator("#test-results")).to_contain_text("test_digits_are_kept")
    assert page.locator("#test-results tr.test-passed").count() == 5
    timeline = page.locator("#gantt")
    expect(timeline).to_be_visible()
    assert timeline.locator("rect").count() >= 8
    expect(timeline).to_contain_text("provider.tool.write")
    expect(page.locator("#provider-steps")).to_contain_text("tool_start")
    expect(page.locator("#admission")).to_contain_text("builtin")
    expect(page.locator("#isolation")).to_contain_text("canary", ignore_case=True)
    _shot(tab, screenshots, "run-pass")
    # An artifact link opens the bundle's own file.
    page.get_by_role("link", name="report.json", exact=True).click()
    expect(page.locator("body")).to_contain_text('"verdict": "pass"')
    assert tab.problems == []


def test_a_failing_run_page_names_the_failing_tests(
        evidence: Evidence, tab: Tab, tmp_path: Path, screenshots: Path) -> None:
    _open(tab, evidence, [evidence.failing], tmp_path / "run.html")
    page = tab.page
    expect(page.locator("#verdict")).to_have_text("FAIL")
    expect(page.locator("#reason")).to_contain_text("the harness's own tests failed")
    expect(page.locator("#problems")).to_contain_text("harness_verification_passed")
    failed = page.locator("#test-results tr.test-failed")
    assert failed.count() >= 1
    expect(failed.first).to_contain_text("tests.test_text.SlugifyTest")
    expect(page.locator("#disagreement")).to_contain_text("provider says completed")
    _shot(tab, screenshots, "run-fail")
    assert tab.problems == []


def test_suite_page_grid_links_filters_and_plot(
        evidence: Evidence, tab: Tab, tmp_path: Path, screenshots: Path) -> None:
    main = _open(tab, evidence, [evidence.suite], tmp_path / "suite.html")
    page = tab.page
    expect(page.locator("#verification")).to_have_attribute("data-verified", "true")
    grid = page.locator("#grid")
    assert grid.locator("td.cell a").count() == 4
    expect(grid.locator("tr.grid-row", has_text="r1-string-slugify")).to_contain_text("PASS")
    expect(page.locator("#aggregates")).to_contain_text("100%")
    assert page.locator("#aggregates svg circle").count() == 4
    _shot(tab, screenshots, "suite")

    # Filters: hide passes, then narrow by case text.
    page.locator("#filters input[value=pass]").uncheck()
    expect(page.locator("#shown-count")).to_have_text("2")
    assert page.locator("tr.run-row[data-status=pass]:visible").count() == 0
    page.locator("#filters input[value=pass]").check()
    page.locator("#filters input[type=search]").fill("wrong")
    expect(page.locator("#shown-count")).to_have_text("2")
    expect(page.locator("tr.grid-row", has_text="r1-string-slugify")).to_be_hidden()
    page.locator("#filters input[type=search]").fill("")

    # Suite -> run page -> back to the suite.
    grid.locator("tr.grid-row", has_text="wrong-slugify").locator("a").first.click()
    expect(page.locator("#verdict")).to_have_text("FAIL")
    expect(page.locator("h1")).to_contain_text("wrong-slugify")
    page.get_by_role("link", name="suite", exact=True).click()
    assert Path(page.url.removeprefix("file://")) == main
    expect(page.locator("#grid")).to_be_visible()
    assert tab.problems == []


def test_a_tampered_bundle_shows_the_unverified_banner(
        evidence: Evidence, tab: Tab, tmp_path: Path, screenshots: Path) -> None:
    bundle = copy_bundle(evidence.passing, tmp_path / "bundle")
    (bundle / "patch.diff").write_text("diff --git a/x b/x\n+forged\n")
    _open(tab, evidence, [bundle], tmp_path / "run.html")
    page = tab.page
    banner = page.locator("#verification")
    expect(banner).to_have_attribute("data-verified", "false")
    expect(banner).to_contain_text("UNVERIFIED")
    expect(banner).to_contain_text("digest mismatch: patch.diff")
    expect(page.locator("#verdict")).to_contain_text("UNVERIFIED")
    expect(page.locator("#verdict")).not_to_have_text("PASS")
    expect(page.locator("main")).to_have_class("unverified")
    _shot(tab, screenshots, "run-tampered")
    assert tab.problems == []


def test_a_suite_with_a_tampered_run_marks_it_and_leaves_it_out(
        evidence: Evidence, tab: Tab, tmp_path: Path) -> None:
    suite = copy_bundle(evidence.suite, tmp_path / "suite")
    data = json.loads((suite / "suite.json").read_text())
    victim = next(r for r in data["runs"] if r["case_id"] == "wrong-slugify")
    report = suite / victim["run_dir"] / "report.json"
    report.write_text(report.read_text().replace('"verdict": "fail"', '"verdict": "pass"'))
    _open(tab, evidence, [suite], tmp_path / "suite.html")
    page = tab.page
    expect(page.locator("#verification")).to_have_attribute("data-verified", "false")
    expect(page.locator("#verification")).to_contain_text("3 of 4 run bundles verified")
    expect(page.locator("#grid")).to_contain_text("UNVERIFIED")
    row = page.locator("#aggregates tr", has_text="wrong-slugify")
    expect(row.locator("td").nth(1)).to_have_text("1")  # only the verified run is counted
    assert tab.problems == []


def test_hostile_strings_in_a_verified_bundle_render_inert(
        evidence: Evidence, tab: Tab, tmp_path: Path, screenshots: Path) -> None:
    _open(tab, evidence, [evidence.hostile], tmp_path / "run.html")
    page = tab.page
    expect(page.locator("#verification")).to_have_attribute("data-verified", "true")
    _assert_inert(page)
    changes = page.locator("#changes")
    expect(changes).to_contain_text("<img src=x onerror=window.__pwned=1>.py")
    expect(changes).to_contain_text("<script>window.__pwned=2.py")
    expect(changes).to_contain_text("ansi-\u241b[2J\u241b[31mPASS.txt")  # ESC shown as ␛
    expect(changes).to_contain_text("bidi-\u27e8U+202E\u27e9txt.exe")
    expect(changes).to_contain_text("**PASS** [ok](javascript:window.__pwned=3).md")
    expect(page.locator("#diff")).to_contain_text("<script>window.__pwned=4</script>")
    expect(page.locator("#tests")).to_contain_text("test_docstring_is_markup")
    _shot(tab, screenshots, "run-hostile")
    assert tab.problems == []
    # Defence in depth: even a script element that got into the page would not run.
    assert page.evaluate("""() => { const s = document.createElement('script');
        s.textContent = 'window.__pwned = 8'; document.body.appendChild(s);
        return window.__pwned; }""") is None
    assert any("Content Security Policy" in p for p in tab.problems), tab.problems


def test_hostile_strings_in_a_tampered_report_render_inert(
        evidence: Evidence, tab: Tab, tmp_path: Path) -> None:
    bundle = copy_bundle(evidence.failing, tmp_path / "bundle")
    report = json.loads((bundle / "report.json").read_text())
    report["verdict"] = "pass"
    report["case_id"] = "<b id=forged>case</b>\nline two"
    report["blockers"] = [{"code": "<script>window.__pwned=6</script>",
                           "message": "\x1b[2J\x1b[32mPASS\x1b[0m \u202e<i>x</i>"}]
    report["provider_claims"] = {"note": "</pre><script>window.__pwned=7</script>"}
    (bundle / "report.json").write_text(json.dumps(report))
    _open(tab, evidence, [bundle], tmp_path / "run.html")
    page = tab.page
    expect(page.locator("#verification")).to_contain_text("UNVERIFIED")
    expect(page.locator("#verdict")).to_contain_text("the report claims PASS")
    _assert_inert(page)
    assert page.locator("#forged").count() == 0
    expect(page.locator("h1")).to_contain_text("<b id=forged>case</b>\u2424line two")
    expect(page.locator("#problems")).to_contain_text("<script>window.__pwned=6</script>")
    expect(page.locator("#problems")).to_contain_text("\u241b[2J\u241b[32mPASS")
    assert tab.problems == []


def _assert_inert(page: object) -> None:
    assert page.evaluate("window.__pwned") is None  # type: ignore[attr-defined]
    assert page.evaluate("document.scripts.length") == 1  # type: ignore[attr-defined]
    assert page.evaluate("document.images.length") == 0  # type: ignore[attr-defined]
    assert page.evaluate(  # type: ignore[attr-defined]
        "[...document.querySelectorAll('*')].filter(e => [...e.attributes].some("
        "a => a.name.startsWith('on'))).length") == 0
    assert page.evaluate(  # type: ignore[attr-defined]
        "[...document.querySelectorAll('a')].filter(a => !a.href.startsWith('file:')"
        " && !a.href.startsWith('http://127.0.0.1')).length") == 0


def test_compare_two_suites_and_follow_to_a_suite(
        evidence: Evidence, tab: Tab, tmp_path: Path, screenshots: Path) -> None:
    _open(tab, evidence, [evidence.suite, evidence.suite_fixed], tmp_path / "compare.html")
    page = tab.page
    row = page.locator("tr.case-row", has_text="wrong-slugify")
    expect(row).to_have_attribute("data-trend", "better")
    expect(row).to_contain_text("+100 pts")
    expect(page.locator("tr.case-row", has_text="r1-string-slugify")).to_have_attribute(
        "data-trend", "same")
    _shot(tab, screenshots, "compare-suites")
    page.get_by_role("link", name="Suite B's page").click()
    expect(page.locator("#grid")).to_be_visible()
    assert page.locator("#grid td.cell a").count() == 2
    assert tab.problems == []


def test_compare_two_runs(evidence: Evidence, tab: Tab, tmp_path: Path) -> None:
    _open(tab, evidence, [evidence.passing, evidence.failing], tmp_path / "compare.html")
    page = tab.page
    expect(page.locator("#side-a")).to_contain_text("PASS")
    expect(page.locator("#side-b")).to_contain_text("FAIL")
    expect(page.locator("#files")).to_contain_text("differs")
    expect(page.locator("#tests")).to_contain_text("failed")
    assert tab.problems == []


def test_served_pages_link_to_bundle_files_through_the_server(
        evidence: Evidence, tab: Tab, tmp_path: Path) -> None:
    site = build_site([evidence.suite], tmp_path / "site" / "index.html",
                      public_key=evidence.public_key, serve=True)
    with serving(site.main, site.pages, mounts_for([evidence.suite]), site.files) as server:
        page = tab.page
        page.goto(server.url)
        expect(page.locator("#grid")).to_be_visible()
        page.locator("#grid td.cell a").first.click()
        expect(page.locator("#verdict")).to_have_text("PASS")
        page.get_by_role("link", name="patch.diff", exact=True).click()
        expect(page.locator("body")).to_contain_text("+++ b/slugkit/text.py")
        assert page.url.startswith(f"http://127.0.0.1:{server.server_address[1]}/files/bundle/")
    assert tab.problems == []
