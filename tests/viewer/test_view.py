"""`cto-harness view` without a browser: the command line, what the pages hold, the loopback
server's refusals (traversal, links, unlisted files, foreign hosts), and the escaping guard."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from cto_harness.errors import UsageError
from cto_harness.viewer import render
from cto_harness.viewer.serve import serving
from cto_harness.viewer.site import build_site, mounts_for
from cto_harness.viewer.suiteview import MAX_ROWS, load_suite
from viewer.conftest import Evidence, copy_bundle


def _cli(evidence: Evidence, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cto_harness", "view", *args],
                          capture_output=True, text=True, env=evidence.env(), cwd=REPO_ROOT,
                          timeout=120)


class _Injected(HTMLParser):
    """Counts what a hostile string could have added: script elements, event-handler
    attributes, images, javascript: links."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts = self.handlers = self.images = self.js_links = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self.images += tag == "img"
        self.handlers += sum(1 for name, _ in attrs if name.startswith("on"))
        self.js_links += sum(1 for name, value in attrs
                             if name == "href" and (value or "").lower().startswith("javascript"))


def _injected(html: str) -> tuple[int, int, int, int]:
    parser = _Injected()
    parser.feed(html)
    return parser.scripts - 1, parser.handlers, parser.images, parser.js_links


def test_the_hostile_page_holds_no_injected_markup_and_the_check_sees_a_missing_escape(
        evidence: Evidence, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = build_site([evidence.hostile], tmp_path / "ok.html", public_key=evidence.public_key)
    assert _injected(site.main.read_text()) == (0, 0, 0, 0)
    # The same page with autoescape off: the check above must catch it.
    real = render.environment

    def unescaped() -> object:
        env = real()
        env.autoescape = False
        return env

    monkeypatch.setattr(render, "environment", unescaped)
    monkeypatch.setattr("cto_harness.viewer.site.environment", unescaped)
    broken = build_site([evidence.hostile], tmp_path / "bad.html", public_key=evidence.public_key)
    scripts, handlers, images, _links = _injected(broken.main.read_text())
    assert scripts > 0 and handlers > 0 and images > 0


def test_view_writes_a_self_contained_page_and_exits_0_when_verified(
        evidence: Evidence, tmp_path: Path) -> None:
    out = tmp_path / "page.html"
    proc = _cli(evidence, str(evidence.passing), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out.absolute())
    html = unescape(out.read_text())
    # Nothing loads from elsewhere: no src/href to a network location, CSP allows none.
    assert "http://" not in html.replace("http://127.0.0.1", "") and "https://" not in html
    assert "default-src 'none'" in html and "<link " not in html and " src=" not in html
    assert "everything verified" in proc.stderr


def test_view_default_output_is_a_cache_outside_the_bundle_and_the_home(
        evidence: Evidence, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "cto_harness", "view", str(evidence.failing)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          env={**evidence.env(), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    page = Path(proc.stdout.strip())
    assert page.is_file() and page.parent.parent == tmp_path / "cache" / "cto-harness" / "views"
    assert evidence.failing not in page.parents and evidence.home not in page.parents


def test_view_exits_1_on_a_tampered_bundle(evidence: Evidence, tmp_path: Path) -> None:
    bundle = copy_bundle(evidence.passing, tmp_path / "bundle")
    (bundle / "test.log").write_text("Ran 5 tests\n\nOK\n")
    proc = _cli(evidence, str(bundle), "--out", str(tmp_path / "p.html"))
    assert proc.returncode == 1
    assert "UNVERIFIED" in proc.stderr
    html = (tmp_path / "p.html").read_text()
    assert 'data-verified="false"' in html and "digest mismatch: test.log" in html


@pytest.mark.parametrize("case", ["inside", "mixed", "neither", "three", "port", "suffix"])
def test_view_usage_errors_exit_64(evidence: Evidence, tmp_path: Path, case: str) -> None:
    args = {
        "inside": [str(evidence.passing), "--out", str(evidence.passing / "view.html")],
        "mixed": [str(evidence.passing), str(evidence.suite)],
        "neither": [str(tmp_path)],
        "three": [str(evidence.passing)] * 3,
        "port": [str(evidence.passing), "--port", "8080"],
        "suffix": [str(evidence.passing), "--out", str(tmp_path / "x.txt")],
    }[case]
    proc = _cli(evidence, *args)
    assert proc.returncode == 64, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (evidence.passing / "view.html").exists()


def test_the_verdict_is_read_from_the_bundle_not_from_suite_json(
        evidence: Evidence, tmp_path: Path) -> None:
    suite = copy_bundle(evidence.suite, tmp_path / "suite")
    data = json.loads((suite / "suite.json").read_text())
    for run in data["runs"]:
        run["verdict"] = "pass"  # suite.json is unsigned: anyone can say so
    data["aggregates"]["wrong-slugify"]["passes"] = 2
    (suite / "suite.json").write_text(json.dumps(data))
    site = build_site([suite], tmp_path / "s.html", public_key=evidence.public_key)
    html = site.main.read_text()
    assert "suite.json says pass, the bundle says fail" in html
    assert "suite.json counts 2 passes for wrong-slugify" in html
    assert 'data-verified="false"' in html and not site.verified


def test_suite_json_cannot_count_one_bundle_twice_or_under_another_case(
        evidence: Evidence, tmp_path: Path) -> None:
    suite = copy_bundle(evidence.suite, tmp_path / "suite")
    data = json.loads((suite / "suite.json").read_text())
    passing = next(r for r in data["runs"] if r["verdict"] == "pass")
    failing_case = next(r["case_id"] for r in data["runs"] if r["verdict"] == "fail")
    # The unsigned index lists one genuine passing bundle three more times: twice again under
    # its own case (as if the other repeats had passed) and once under the failing case.
    data["runs"] = [r for r in data["runs"] if r["case_id"] != passing["case_id"]] + [
        {**passing, "repeat": 1}, {**passing, "repeat": 2},
        {**passing, "case_id": failing_case, "repeat": 3}]
    (suite / "suite.json").write_text(json.dumps(data))
    view = load_suite(suite, evidence.public_key)
    assert view.aggregates[passing["case_id"]]["passes"] == 1
    assert view.aggregates[failing_case]["passes"] == 0
    disputed = [r for r in view.runs if r.disputed]
    assert len(disputed) == 2 and all(r.status == "unverified" for r in disputed)
    assert "again" in disputed[0].note and "lists case" in disputed[1].note
    site = build_site([suite], tmp_path / "s.html", public_key=evidence.public_key)
    assert not site.verified and 'data-verified="false"' in site.main.read_text()


def test_suite_json_cannot_leave_out_runs_the_suite_signed_for(
        evidence: Evidence, tmp_path: Path) -> None:
    suite = copy_bundle(evidence.suite, tmp_path / "suite")
    data = json.loads((suite / "suite.json").read_text())
    dropped = sorted(r["run_dir"] for r in data["runs"] if r["verdict"] == "fail")
    assert dropped
    # The unsigned index keeps only the passing runs, and its numbers to match.
    data["runs"] = [r for r in data["runs"] if r["verdict"] == "pass"]
    data["cases"] = sorted({r["case_id"] for r in data["runs"]})
    data["aggregates"] = {c: a for c, a in data["aggregates"].items() if c in data["cases"]}
    (suite / "suite.json").write_text(json.dumps(data))
    view = load_suite(suite, evidence.public_key)
    assert all(r.verified for r in view.runs)
    assert not view.all_verified
    (note,) = [n for n in view.notes if "leaves out" in n]
    assert f"{len(dropped)} run(s)" in note and dropped[0] in note
    site = build_site([suite], tmp_path / "s.html", public_key=evidence.public_key)
    assert not site.verified
    # Without the signed list there is nothing to hold suite.json to: said, never verified.
    (suite / "signers.dsse.json").unlink()
    assert any("signers.dsse.json" in n for n in load_suite(suite, evidence.public_key).notes)


def test_a_bundle_copied_in_from_elsewhere_counts_nowhere(
        evidence: Evidence, tmp_path: Path) -> None:
    # A genuine passing bundle of the same case, signed by the same key (another suite's), put
    # in place of a failing one with suite.json to match: the page counted it and said that
    # everything verified. The suite's signed list names another bundle there.
    suite = copy_bundle(evidence.suite, tmp_path / "suite")
    data = json.loads((suite / "suite.json").read_text())
    row = next(r for r in data["runs"] if r["verdict"] == "fail")
    fixed = json.loads((evidence.suite_fixed / "suite.json").read_text())
    donor = next(r for r in fixed["runs"] if r["case_id"] == row["case_id"])
    assert donor["verdict"] == "pass"
    shutil.rmtree(suite / row["run_dir"])
    copy_bundle(evidence.suite_fixed / donor["run_dir"], suite / row["run_dir"])
    row.update(verdict="pass", run_id=donor["run_id"])
    (suite / "suite.json").write_text(json.dumps(data))
    view = load_suite(suite, evidence.public_key)
    (swapped,) = [r for r in view.runs if r.disputed]
    assert swapped.run is not None and swapped.run.verification.ok  # it verifies on its own
    assert "signed list does not name this bundle" in swapped.note
    assert view.aggregates[row["case_id"]]["passes"] == 0 and not view.all_verified

    # A suite.json that claims another engine than its bundles' counts none of them.
    data["engine"] = "case"
    (suite / "suite.json").write_text(json.dumps(data))
    assert not any(r.verified for r in load_suite(suite, evidence.public_key).runs)


def test_suite_json_cannot_blow_the_grid_up(evidence: Evidence, tmp_path: Path) -> None:
    # 20,000 declared case ids and a repeat of 1e9 (capped at 500): ten million cells, a
    # 570 MB page, from a suite.json of 192 kB.
    suite = copy_bundle(evidence.suite, tmp_path / "suite")
    data = json.loads((suite / "suite.json").read_text())
    listed = sorted({r["case_id"] for r in data["runs"]})
    data["cases"] = listed + [f"c{i}" for i in range(20_000)]
    data["repeat"] = 10**9
    (suite / "suite.json").write_text(json.dumps(data))
    view = load_suite(suite, evidence.public_key)
    assert view.cases == listed and view.k == max(r["repeat"] for r in data["runs"])
    assert any("20002 cases" in n for n in view.notes) and not view.all_verified


def test_suite_json_rows_cost_linear_time(evidence: Evidence, tmp_path: Path) -> None:
    # 40,000 rows of distinct made-up cases (1.4 MB, no bundle at all): every case was looked up
    # in a list and every case's row scanned over every run, so the page took minutes and an
    # unsigned 32 MB suite.json hours. Rows past the grid's size are not read, and the rest in
    # one pass.
    suite = copy_bundle(evidence.suite, tmp_path / "suite")
    data = json.loads((suite / "suite.json").read_text())
    data["runs"] += [{"case_id": f"made-up-{i}", "repeat": 1} for i in range(40_000)]
    (suite / "suite.json").write_text(json.dumps(data))
    site = build_site([suite], tmp_path / "s.html", public_key=evidence.public_key)
    view = load_suite(suite, evidence.public_key)
    assert len(view.runs) == MAX_ROWS and not view.all_verified
    assert any(f"lists {40_000 + 4} runs" in n for n in view.notes)
    assert not site.verified


def test_suite_json_naming_one_bundle_often_checks_and_renders_it_once(
        evidence: Evidence, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each row re-verified and re-rendered its bundle: 20,000 rows of one bundle with a large
    # diff and logs were hours and gigabytes of pages from a few hundred kB of suite.json.
    from cto_harness.viewer import suiteview

    suite = copy_bundle(evidence.suite, tmp_path / "suite")
    data = json.loads((suite / "suite.json").read_text())
    row = data["runs"][0]
    data["runs"] += [{**row, "run_dir": variant} for variant in
                     [row["run_dir"], row["run_dir"] + "/", "./" + row["run_dir"]] * 100]
    (suite / "suite.json").write_text(json.dumps(data))
    calls: list[Path] = []
    real = suiteview.load_run

    def counting(path: Path, public_key: Path | None = None) -> suiteview.RunView:
        calls.append(path)
        return real(path, public_key)

    monkeypatch.setattr(suiteview, "load_run", counting)
    site = build_site([suite], tmp_path / "s.html", public_key=evidence.public_key)
    assert len(calls) == len(set(calls)) == 4
    assert len(site.pages) == 4 + 1 and not site.verified
    view = load_suite(suite, evidence.public_key)
    assert sum(r.disputed for r in view.runs) == 300


def test_suite_json_cannot_point_the_viewer_outside_the_suite(
        evidence: Evidence, tmp_path: Path) -> None:
    suite = copy_bundle(evidence.suite, tmp_path / "suite")
    data = json.loads((suite / "suite.json").read_text())
    data["runs"][0]["run_dir"] = "../../../../../../etc"
    data["runs"][1]["run_dir"] = str(evidence.passing)  # absolute
    link = suite / "runs" / "link"
    link.symlink_to(evidence.passing)
    data["runs"][2]["run_dir"] = "runs/link"
    (suite / "suite.json").write_text(json.dumps(data))
    site = build_site([suite], tmp_path / "s.html", public_key=evidence.public_key)
    html = site.main.read_text()
    # Each of the three named in the red banner and in the runs table.
    assert html.count("a bundle path outside the suite folder: not read") == 6
    assert 'data-verified="false"' in html
    assert len(list((tmp_path / "s-runs").glob("run-*.html"))) == 1  # only the fourth run


# --- the server ------------------------------------------------------------------------------


def _get(port: int, path: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    # Sent exactly as written: no client-side normalisation of "..".
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def test_the_server_serves_pages_and_linked_bundle_files_only(
        evidence: Evidence, tmp_path: Path) -> None:
    bundle = copy_bundle(evidence.passing, tmp_path / "bundle")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside\n")
    (bundle / "backend" / "leak").symlink_to(secret)  # planted after the run
    (bundle / "workspace" / "note.html").write_text("<script>alert(1)</script>")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "other.html").write_text("not generated")
    site = build_site([bundle], tmp_path / "site" / "index.html", public_key=evidence.public_key,
                      serve=True)
    assert site.files and all(bundle in f.parents for f in site.files)
    with serving(site.main, site.pages, mounts_for([bundle]), site.files) as server:
        port = server.server_address[1]
        status, headers, body = _get(port, "/")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b'data-verified="false"' in body  # the planted link breaks verification
        status, headers, body = _get(port, "/files/bundle/report.json")
        assert status == 200 and b'"verdict": "pass"' in body
        assert headers["content-type"].startswith("text/plain")
        assert headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in headers["content-security-policy"]
        refused = [
            "/files/bundle/../secret.txt",
            "/files/bundle/%2e%2e/secret.txt",
            "/files/bundle/..%2fsecret.txt",
            "/files/bundle/backend%2f..%2f..%2fsecret.txt",
            "/files/bundle/backend/leak",
            "/files/bundle/workspace/note.html",
            "/files/bundle/report.json%00.html",
            "/files/bundle//etc/passwd",
            "/files/nomount/report.json",
            "/..%2fsecret.txt",
            "/other.html",
            "/" + str(secret),
            "//etc/passwd",
            "/files/bundle/%ff",
        ]
        for path in refused:
            status, _headers, body = _get(port, path)
            assert status == 404, path
            assert b"outside" not in body
        status, _headers, _body = _get(port, "/", host="rebind.example:80")
        assert status == 421
        # A linked file swapped for a link after the pages were made is not followed either.
        (bundle / "patch.diff").unlink()
        (bundle / "patch.diff").symlink_to(secret)
        backend = bundle / "backend"
        backend.rename(tmp_path / "backend-real")
        backend.symlink_to(tmp_path / "backend-real")
        for path in ("/files/bundle/patch.diff", "/files/bundle/backend/stdout.log"):
            status, _headers, body = _get(port, path)
            assert status == 404 and b"outside" not in body, path


def test_view_serve_prints_a_loopback_url_and_stops_on_ctrl_c(evidence: Evidence) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cto_harness", "view", str(evidence.passing), "--serve",
         "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=evidence.env(), cwd=REPO_ROOT)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()  # waits for the line, no sleep
        assert url.startswith("http://127.0.0.1:") and url.endswith("/index.html")
        port = int(url.split(":")[2].split("/")[0])
        status, _headers, body = _get(port, "/index.html")
        assert status == 200 and b'id="verdict"' in body
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def test_the_server_sends_only_the_bytes_it_verified_from_the_folders_it_opened(
        evidence: Evidence, tmp_path: Path) -> None:
    # Someone who can write the bundle's folder while it is served: a file rewritten after the
    # page said "verified", and the whole bundle folder swapped for a link to another folder
    # holding the same names (it served /etc/passwd this way).
    bundle = copy_bundle(evidence.passing, tmp_path / "bundle")
    (bundle / "extra.txt").write_text("linked from the page as not in the manifest\n")
    site = build_site([bundle], tmp_path / "site" / "index.html", public_key=evidence.public_key,
                      serve=True)
    assert {"patch.diff", "extra.txt"} <= {f.name for f in site.files}
    original = (bundle / "patch.diff").read_bytes()
    with serving(site.main, site.pages, mounts_for([bundle]), site.files) as server:
        port = server.server_address[1]
        assert _get(port, "/files/bundle/patch.diff")[2] == original
        (bundle / "patch.diff").write_bytes(b"rewritten after verification\n")
        status, _headers, body = _get(port, "/files/bundle/patch.diff")
        assert status == 409 and b"rewritten" not in body
        (bundle / "patch.diff").write_bytes(original)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        (elsewhere / "extra.txt").write_text("outside the bundle\n")
        (elsewhere / "patch.diff").write_text("outside the bundle\n")
        bundle.rename(tmp_path / "moved")
        bundle.symlink_to(elsewhere)
        for name in ("extra.txt", "patch.diff"):
            status, _headers, body = _get(port, f"/files/bundle/{name}")
            assert b"outside" not in body, name
        assert _get(port, "/files/bundle/patch.diff") [:1] == (200,)  # the folder it opened


def test_serve_refuses_a_port_it_cannot_bind(evidence: Evidence, tmp_path: Path) -> None:
    with serving(tmp_path / "x.html", [], {}, {}) as server:
        port = server.server_address[1]
        proc = _cli(evidence, str(evidence.passing), "--serve", "--port", str(port))
    assert proc.returncode == 64 and "cannot listen" in proc.stderr


def test_kind_of_refuses_a_link(evidence: Evidence, tmp_path: Path) -> None:
    from cto_harness.viewer.site import kind_of

    (tmp_path / "link").symlink_to(evidence.passing)
    with pytest.raises(UsageError):
        kind_of(tmp_path / "link")
    assert kind_of(evidence.passing) == "run" and kind_of(evidence.suite) == "suite"
