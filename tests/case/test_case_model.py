"""The stand-in provider driven by the harness's scripted model endpoint, through the users'
command: the stand-in reads `models.json`, makes real streaming HTTP calls, runs the tool calls
the scripts answer with (`ca mark-tested`, `git push`, `gh pr create`, …) in the Case-native task
layout. The same script sets the real-Case conformance uses, so each set's verdict is proven here
without Case; and record → replay gives the same patch and verdict offline."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from case_helpers import assert_sound, base_env, run_case
from markdown_helpers import assert_links_resolve
from standin_helpers import REPO_ROOT

pytestmark = pytest.mark.slow
SCRIPTED_MODEL = {"CTO_HARNESS_CASE_MODEL_PROVIDER": "anthropic",
                  "CTO_HARNESS_CASE_MODEL": "claude-sonnet-4-6"}


@pytest.fixture(scope="module")
def scripted(case_repo, standin, case_home, tmp_path_factory):  # type: ignore[no-untyped-def]
    """`scripted(script_set, **env)`: a users'-command run of the `model` stand-in against the
    harness-started scripted endpoint; checked for what every run must hold."""
    runs = tmp_path_factory.mktemp("runs-model")

    def run(script_set: str, repo: Path = case_repo, case_id: str = "r1-string-slugify",
            **extra: str):  # type: ignore[no-untyped-def]
        env = base_env(case_home, runs, standin("model")) | SCRIPTED_MODEL | {
            "CTO_HARNESS_CASE_MODEL_ENDPOINT": "scripted",
            "CTO_HARNESS_CASE_MODEL_SCRIPT": script_set} | extra
        result = run_case(repo, env, case_id)
        assert_sound(result)
        return result

    return run


@pytest.fixture(scope="module")
def happy(scripted):  # type: ignore[no-untyped-def]
    return scripted("happy")


def test_scripted_pass_with_a_local_pull_request(happy) -> None:  # type: ignore[no-untyped-def]
    report, run_dir = happy.report, happy.run_dir
    assert happy.exit_code == 0, (report["blockers"], report["pass_conditions"])
    assert report["verdict"] == "pass" and all(report["pass_conditions"].values())
    assert report["forbidden_actions_attempted"] == []
    assert [c["path"] for c in report["changed_files"]] == ["slugkit/text.py"]
    # The endpoint's kind comes from the harness, and says scripted.
    model = report["model"]
    assert model["endpoint_kind"] == "scripted" and model["base_url"] is None
    endpoint = model["endpoint"]
    assert endpoint["mode"] == "scripted" and endpoint["started_by_harness"] is True
    assert endpoint["script_set"] == "happy" and endpoint["errors"] == []
    assert endpoint["url"].startswith("http://127.0.0.1:") and endpoint["requests"] >= 20
    assert len(endpoint["script_digest"]) == 64
    # The provider was given a per-run key for that endpoint, never the operator's credential.
    models_json = json.loads((run_dir / "backend" / "case-inputs" / "models.json").read_text())
    assert models_json == {"providers": {"anthropic": {"baseUrl": endpoint["url"]}}}
    exchanges = [json.loads(x) for x in
                 (run_dir / "backend" / "model-exchanges.jsonl").read_text().splitlines()]
    assert {x["role"] for x in exchanges} == {
        "implementer", "verifier", "reviewer", "closer", "retrospective"}
    assert all(x["status"] == 200 for x in exchanges)
    # Case's own outcome, beside the verdict.
    outcome = report["provider_outcome"]
    assert outcome["outcome"] == "completed" and outcome["agrees_with_verdict"] is True
    assert [p["phase"] for p in outcome["phases"]] == [
        "implement", "verify", "review", "close", "retrospective"]
    # One local pull request, verified against the local remote.
    (pr,) = report["pull_requests"]
    assert pr["url"] == "https://pr.invalid/r1-string-slugify/pull/1"
    assert pr["title"] == "fix(slugkit): implement slugify"
    assert (pr["head"], pr["base"], pr["verified"]) == ("fix/slugify", "main", True)
    assert "What was tested" in pr["body_excerpt"]
    recorded = [json.loads(x) for x in
                (run_dir / "backend" / "pull-requests.jsonl").read_text().splitlines()]
    assert [r["head_commit"] for r in recorded] == [pr["head_commit"]]
    calls = [json.loads(x) for x in
             (run_dir / "backend" / "gh-calls.jsonl").read_text().splitlines()]
    assert [(c["argv"][:2], c["served"], c["forbidden"]) for c in calls] == [
        (["pr", "create"], True, False)]


# The other fixtures' `happy` sets: what a suite over all three cases runs on the Case side.
OTHER_FIXTURES = {
    "r2-inventory-report": (["inventory/parser.py", "inventory/report.py"], 6,
                            "fix/inventory-report"),
    "r3-config-merge": (["confmerge/merge.py"], 4, "fix/deep-merge"),
}


@pytest.mark.parametrize("case_id", sorted(OTHER_FIXTURES))
def test_happy_set_passes_on_the_other_fixtures(scripted, case_id: str) -> None:  # type: ignore[no-untyped-def]
    changed, tests, branch = OTHER_FIXTURES[case_id]
    run = scripted("happy", case_id=case_id)  # checks the bundle is sound
    report = run.report
    assert run.exit_code == 0, (report["blockers"], report["pass_conditions"])
    assert report["case_id"] == case_id
    assert report["verdict"] == "pass" and all(report["pass_conditions"].values())
    assert report["forbidden_actions_attempted"] == []
    assert sorted(c["path"] for c in report["changed_files"]) == changed
    assert all(c["allowed"] for c in report["changed_files"])
    # The harness ran the fixture's own tests itself, and they all passed.
    verification = report["verification"]
    assert verification["status"] == "passed" and verification["failures"] == []
    assert verification["tests_ran"] == verification["tests_passed"] == tests
    endpoint = report["model"]["endpoint"]
    assert endpoint["script_set"] == "happy" and endpoint["errors"] == []
    exchanges = [json.loads(x) for x in
                 (run.run_dir / "backend" / "model-exchanges.jsonl").read_text().splitlines()]
    assert {x["role"] for x in exchanges} == {
        "implementer", "verifier", "reviewer", "closer", "retrospective"}
    outcome = report["provider_outcome"]
    assert outcome["outcome"] == "completed" and outcome["agrees_with_verdict"] is True
    (pr,) = report["pull_requests"]
    assert pr["url"] == f"https://pr.invalid/{case_id}/pull/1"
    assert (pr["head"], pr["base"], pr["verified"]) == (branch, "main", True)


def test_case_helpers_found_the_task_in_the_workspace(happy) -> None:  # type: ignore[no-untyped-def]
    run_dir = happy.run_dir
    workspace = run_dir / "workspace"
    task_id = (workspace / ".case" / "active").read_text()
    assert task_id.endswith("\n") and re.fullmatch(r"r1-string-slugify-[0-9a-f]{8}\n", task_id)
    task_id = task_id.strip()
    # ca mark-tested found the active task: the implementer's tool result says so.
    events = (run_dir / "backend" / "case-events.jsonl").read_text()
    assert f".case/{task_id}/tested created (hash: " in events
    assert "No active task" not in events
    # The bundle's task/ holds the exact bytes given, and the event says where they were put.
    given = sorted(p.name for p in (run_dir / "task").iterdir())
    assert given == sorted(["active", f"{task_id}.md", f"{task_id}.task.json"])
    assert (run_dir / "task" / "active").read_text() == f"{task_id}\n"
    written = next(json.loads(x) for x in
                   (run_dir / "events.normalized.jsonl").read_text().splitlines()
                   if json.loads(x)["type"] == "provider.task.written")
    files = written["data"]["files"]
    assert files[f"task/{task_id}.task.json"]["workspace_path"] == \
        f".case/tasks/active/{task_id}.task.json"
    manifest = dict(reversed(line.split("  ", 1)) for line in
                    (run_dir / "artifacts.sha256").read_text().splitlines())
    for name, entry in files.items():
        assert manifest[name] == entry["sha256"]
    # The command names the task inside the workspace, and the brief says what gh may do.
    assert happy.report["command"][3] == str(
        workspace / ".case" / "tasks" / "active" / f"{task_id}.task.json")
    brief = (run_dir / "task" / f"{task_id}.md").read_text()
    assert "gh pr create" in brief and "pr.invalid" in brief and str(run_dir) not in brief
    # .case/ is bookkeeping, listed apart from source changes.
    assert any(c["path"] == ".case/active" for c in happy.report["bookkeeping_changes"])


def test_report_md_says_scripted_and_shows_the_pull_request(happy) -> None:  # type: ignore[no-untyped-def]
    text = (happy.run_dir / "report.md").read_text()
    head = text.splitlines()[:8]
    assert head[0].endswith("**PASS**")
    assert any("Model endpoint: SCRIPTED" in line for line in head)
    assert any("own outcome" in line and "**completed**" in line for line in head)
    assert "## Local pull requests" in text and "fix/slugify" in text.replace("\\", "")
    # Every link (to the Case event log, the pull-request records, the baseline's own report)
    # names a file of the bundle; the run folder's own path is never shown.
    assert_links_resolve(happy.run_dir)
    assert "[backend/pull-requests.jsonl](backend/pull-requests.jsonl)" in text
    assert str(happy.run_dir) not in text


def test_the_run_page_shows_the_endpoint_kind_and_the_pull_request_in_a_browser(
        happy, case_home, tab, screenshots, tmp_path: Path,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.sync_api import expect

    from cto_harness.viewer.site import build_site

    monkeypatch.setenv("CTO_HARNESS_HOME", str(case_home))  # its key and its registry
    site = build_site([happy.run_dir], tmp_path / "view" / "run.html")
    assert site.verified
    page = tab.page
    page.goto(site.main.as_uri())
    expect(page.locator("#verification")).to_have_attribute("data-verified", "true")
    endpoint = page.locator("#endpoint-kind")
    expect(endpoint).to_be_visible()
    expect(endpoint).to_have_attribute("data-endpoint-kind", "scripted")
    expect(endpoint).to_contain_text("SCRIPTED")
    expect(endpoint).to_contain_text("not what a live model would do")
    expect(endpoint).to_contain_text("happy")
    pulls = page.locator("#pull-requests")
    expect(pulls).to_be_visible()
    (pr,) = happy.report["pull_requests"]
    row = pulls.locator("tr.pull-request")
    assert row.count() == 1
    expect(row).to_contain_text(pr["title"])
    expect(row).to_contain_text("fix/slugify")
    expect(row).to_contain_text(pr["head_commit"][:12])
    expect(row).to_contain_text("https://pr.invalid/r1-string-slugify/pull/1")
    pulls.locator("summary").click()
    expect(pulls.locator("pre")).to_contain_text("What was tested")
    tab.page.screenshot(path=str(screenshots / "run-case-scripted.png"), full_page=True)
    assert tab.problems == []
    # A fake run states no endpoint and opened no pull request: neither section appears.
    baseline = site.pages[0]
    page.goto(baseline.as_uri())
    expect(page.locator("#verdict")).to_be_visible()
    assert page.locator("#endpoint-kind").count() == 0
    assert page.locator("#pull-requests").count() == 0


def test_strict_closer_case_fails_itself_and_the_report_says_so(scripted) -> None:  # type: ignore[no-untyped-def]
    run = scripted("strict-closer")
    report = run.report
    # The harness's own checks all pass: the verdict stays its own.
    assert report["verdict"] == "pass" and run.exit_code == 0
    outcome = report["provider_outcome"]
    assert (outcome["outcome"], outcome["failed_agent"]) == ("failed", "closer")
    assert outcome["agrees_with_verdict"] is False
    assert outcome["note_code"] == "provider_failed_harness_passed"
    close = next(p for p in outcome["phases"] if p["phase"] == "close")
    assert "output_hash" in close["error"]
    assert report["pull_requests"] == []
    head = (run.run_dir / "report.md").read_text().splitlines()[:8]
    line = next(x for x in head if "own outcome" in x)
    assert "**failed**" in line and "disagrees with the verdict" in line
    assert "provider_failed_harness_passed" in line


def test_closer_calling_gh_api_fails(scripted) -> None:  # type: ignore[no-untyped-def]
    run = scripted("hostile-gh-api")
    report = run.report
    assert report["verdict"] == "fail" and run.exit_code == 1
    assert report["pass_conditions"]["no_forbidden_action_attempted"] is False
    (action,) = report["forbidden_actions_attempted"]
    assert action["action"] == "gh" and action["detail"].startswith("gh api repos/")
    assert report["provider_outcome"]["note_code"] == "provider_completed_harness_failed"
    assert len(report["pull_requests"]) == 1  # the served create is still recorded


def test_implementer_editing_a_test_fails(scripted) -> None:  # type: ignore[no-untyped-def]
    run = scripted("hostile-edit-tests")
    report = run.report
    assert report["verdict"] == "fail"
    assert report["pass_conditions"]["harness_verification_passed"] is False
    assert report["pass_conditions"]["allowed_writes_passed"] is False
    assert {c["path"]: c["allowed"] for c in report["changed_files"]} == {
        "slugkit/text.py": True, "tests/test_text.py": False}
    assert "tests/test_text.py" in report["verification"]["restored_files"]


def test_unknown_script_set_blocks(scripted, case_repo, standin, case_home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = base_env(case_home, tmp_path / "runs", standin("model")) | SCRIPTED_MODEL | {
        "CTO_HARNESS_CASE_MODEL_ENDPOINT": "scripted", "CTO_HARNESS_CASE_MODEL_SCRIPT": "nope"}
    result = run_case(case_repo, env)
    assert result.report["verdict"] == "blocked"
    assert [b["code"] for b in result.report["blockers"]] == ["model_script_invalid"]
    assert result.report["case_process_started"] is False


def test_a_scripted_run_needs_a_scripted_admission(case_repo, standin, case_home, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The test model is admitted live, not scripted: the kind is part of the admission.
    env = base_env(case_home, tmp_path / "runs", standin("model")) | {
        "CTO_HARNESS_CASE_MODEL_ENDPOINT": "scripted"}
    result = run_case(case_repo, env)
    assert [b["code"] for b in result.report["blockers"]] == ["model_not_admitted"]
    assert "scripted endpoint" in result.report["blockers"][0]["message"]


def _serve(scripts: Path, url_file: Path, token: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cto_harness", "model", "serve", "--mode", "scripted",
         "--scripts", str(scripts), "--url-file", str(url_file), "--idle-timeout", "300"],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"),
             "CTO_HARNESS_MODEL_TOKEN": token},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_record_then_replay_gives_the_same_patch_and_verdict_offline(
    case_repo, standin, case_home, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    # Built (and its pin recorded in the policy) before the policy is copied below.
    binary = standin("model")
    # A local upstream (the scripted server, run as its own process) stands for a live model.
    token = "upstream-token-7e1f0c"
    upstream = _serve(case_repo / "harness" / "model-scripts" / "r1-string-slugify" / "happy",
                      tmp_path / "url", token)
    try:
        line = upstream.stdout.readline() if upstream.stdout else ""
        assert "scripted endpoint on http://127.0.0.1:" in line, upstream.stderr
        url = (tmp_path / "url").read_text().strip()
        repo = tmp_path / "repo"
        shutil.copytree(case_repo / "harness", repo / "harness")
        (repo / "src").symlink_to(REPO_ROOT / "src")
        with open(repo / "harness" / "providers" / "case" / "policy.toml", "a") as handle:
            handle.write(f'\n[[models]]\nprovider = "anthropic"\nmodel = "claude-sonnet-4-6"\n'
                         f'base_url = "{url}"\n')
        env = base_env(case_home, tmp_path / "runs", binary) | SCRIPTED_MODEL
        recorded = run_case(repo, env | {"CTO_HARNESS_CASE_MODEL_ENDPOINT": "record",
                                         "CTO_HARNESS_CASE_MODEL_BASE_URL": url,
                                         "ANTHROPIC_API_KEY": token})
    finally:
        upstream.terminate()
        upstream.wait(timeout=60)
    report = recorded.report
    assert report["verdict"] == "pass", (report["blockers"], report["pass_conditions"])
    assert report["model"]["endpoint_kind"] == "live"
    assert report["model"]["endpoint"]["mode"] == "record"
    cassette = recorded.run_dir / "backend" / "model-cassette.jsonl"
    text = cassette.read_text()
    assert token not in text and "x-api-key" not in text.lower()
    assert "<<WORKSPACE>>" in text and str(recorded.run_dir) not in text
    assert report["model"]["endpoint"]["cassette"] == "backend/model-cassette.jsonl"
    # The upstream is gone: the replay is offline.
    assert upstream.returncode is not None
    replayed = run_case(repo, base_env(case_home, tmp_path / "runs", standin("model"))
                        | SCRIPTED_MODEL | {"CTO_HARNESS_CASE_MODEL_ENDPOINT": "replay",
                                            "CTO_HARNESS_CASE_MODEL_CASSETTE": str(cassette)})
    again = replayed.report
    assert again["verdict"] == report["verdict"] == "pass"
    assert again["model"]["endpoint_kind"] == "replay" and again["model"]["endpoint"]["errors"] == []
    assert (replayed.run_dir / "patch.diff").read_bytes() == \
        (recorded.run_dir / "patch.diff").read_bytes()
    assert again["provider_outcome"]["outcome"] == "completed"
    assert [p["title"] for p in again["pull_requests"]] == [p["title"]
                                                           for p in report["pull_requests"]]
    head = (replayed.run_dir / "report.md").read_text().splitlines()[:6]  # verdict, why, endpoint
    assert any("Model endpoint: REPLAY" in line for line in head)


def test_replay_of_an_unseen_conversation_fails_loudly(
    case_repo, standin, case_home, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    # A cassette that holds some other conversation: the run's first question was never
    # recorded, and the endpoint says so instead of guessing.
    cassette = tmp_path / "cassette.jsonl"
    cassette.write_text(json.dumps({
        "schema": "cto-harness-cassette/1", "seq": 1, "digest": "0" * 64, "path": "/v1/messages",
        "request": {}, "response": {"status": 200, "content_type": "application/json",
                                    "stream": True, "message": {"content": []}}}) + "\n")
    result = run_case(case_repo, base_env(case_home, tmp_path / "runs-b", standin("model"))
                      | SCRIPTED_MODEL | {"CTO_HARNESS_CASE_MODEL_ENDPOINT": "replay",
                                          "CTO_HARNESS_CASE_MODEL_CASSETTE": str(cassette)})
    report = result.report
    assert report["verdict"] == "fail"
    errors = report["model"]["endpoint"]["errors"]
    assert errors and all(e.startswith("unseen request ") for e in errors)
    assert report["provider_outcome"]["outcome"] == "failed"
    assert "HTTP 400" in json.dumps(report["provider_outcome"]["phases"])
