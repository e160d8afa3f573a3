"""The users' command with an admitted stand-in: a passing report, a bundle `verify` accepts,
Case's inputs valid against Case's own schemas, and no trace of the fake key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from case_helpers import SHARED, assert_sound, base_env, run_case

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def passing_run(case_repo, standin, case_home, tmp_path_factory):  # type: ignore[no-untyped-def]
    runs = tmp_path_factory.mktemp("runs-pass")
    return run_case(case_repo, base_env(case_home, runs, standin("normal")))


def test_users_command_passes(passing_run) -> None:  # type: ignore[no-untyped-def]
    report = passing_run.report
    assert passing_run.exit_code == 0, (report["blockers"], report["pass_conditions"])
    assert report["verdict"] == "pass"
    assert report["engine"] == "case" and report["stage"] == "2"
    assert report["source_admission_status"] == "admitted"
    assert report["case_process_started"] is True
    assert report["backend_exit_code"] == 0
    assert report["allowed_writes_passed"] is True
    assert [c["path"] for c in report["changed_files"]] == ["slugkit/text.py"]
    assert report["blockers"] == []
    assert all(report["pass_conditions"].values())
    assert report["forbidden_actions_attempted"] == []
    assert report["verification"]["status"] == "passed"
    assert report["verification"]["tests_ran"] == 5
    baseline = report["baseline"]
    assert baseline["verdict"] == "pass" and baseline["evidence_shape_equal"] is True
    assert baseline["changed_files"] == baseline["case_changed_files"] == ["slugkit/text.py"]


def test_command_shape_and_provider_recorded(passing_run) -> None:  # type: ignore[no-untyped-def]
    report = passing_run.report
    run_dir = passing_run.run_dir
    task = report["command"][3]
    assert report["command"][1:] == ["run", "--task", task, "--mode", "unattended"]
    assert report["command"][0] == str(run_dir / "private" / "bin" / "ca")
    assert report["provider"]["executed_path"] == report["command"][0]
    assert report["provider"]["provenance_level"] == "built"
    assert report["provider"]["pin"] and len(report["provider"]["sha256"]) == 64
    model = report["model"]
    assert (model["provider"], model["model"], model["base_url"], model["admitted"]) == (
        "anthropic", "standin-model", None, True)
    # No endpoint was started: the admitted live model (its provider's default URL).
    assert model["endpoint_kind"] == "live"
    assert model["endpoint"] == {**model["endpoint"], "mode": "live", "url": None,
                                 "started_by_harness": False}


def test_case_outcome_recorded_as_claims(passing_run) -> None:  # type: ignore[no-untyped-def]
    report, run_dir = passing_run.report, passing_run.run_dir
    claims = report["provider_claims"]
    assert claims["pipeline_end"] == {"outcome": "completed"}
    assert claims["case_said_success"] is True
    assert claims["last_stdout_line"] == "[unattended] Pipeline completed successfully."
    assert claims["markers"]["tested"] and claims["markers"]["reviewed"]
    assert [p["phase"] for p in claims["phase_results"]][:4] == [
        "implement", "verify", "review", "close"]
    assert (run_dir / "backend" / "case-events.jsonl").is_file()
    after = json.loads((run_dir / "backend" / "task-after-run.json").read_text())
    assert after["status"] == "closing"
    # The local push went through the git recorder and was allowed.
    pushes = [json.loads(line) for line in
              (run_dir / "backend" / "git-push-attempts.jsonl").read_text().splitlines()]
    assert pushes and all(p["allowed"] for p in pushes)
    # .case/ is bookkeeping, listed apart.
    assert report["bookkeeping_changes"]
    assert all(c["path"].startswith(".case/") for c in report["bookkeeping_changes"])
    events = [json.loads(line) for line in
              (run_dir / "events.normalized.jsonl").read_text().splitlines()]
    types = {e["type"] for e in events}
    assert {"provider.pipeline.started", "provider.phase.ended", "provider.tool.started",
            "provider.pipeline.ended", "provider.process.started"} <= types
    spans = [json.loads(line)["name"] for line in
             (run_dir / "trace.jsonl").read_text().splitlines()]
    assert "provider.phase.implement" in spans and "provider.tool.bash" in spans


def test_bundle_verifies_and_holds_no_key(passing_run) -> None:  # type: ignore[no-untyped-def]
    assert_sound(passing_run)
    assert (passing_run.run_dir / "baseline" / "report.json").is_file()


def test_task_files_given_and_valid_against_case_schemas(passing_run) -> None:  # type: ignore[no-untyped-def]
    run_dir = passing_run.run_dir
    given = sorted(p.name for p in (run_dir / "task").iterdir())
    assert len(given) == 3 and given[0] == "active"
    assert given[1].endswith(".md") and given[2].endswith(".task.json")
    task = json.loads((run_dir / "task" / given[2]).read_text())
    assert (run_dir / "task" / "active").read_text() == task["id"] + "\n"
    assert task["status"] == "active" and task["mode"] == "unattended"
    assert task["repo"] == "r1-string-slugify" and task["issueType"] == "freeform"
    assert task["id"].startswith("r1-string-slugify-") and given[2] == f"{task['id']}.task.json"
    brief = (run_dir / "task" / given[1]).read_text()
    assert "slugkit/text.py" in brief and "python3 -I -m unittest" in brief
    assert str(run_dir) not in brief
    if not SHARED.is_dir():
        pytest.skip("../shared (Case's schemas) is absent")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((SHARED / "case-task.schema.json").read_text())
    jsonschema.validate(task, schema, format_checker=jsonschema.FormatChecker())


def test_case_inputs_recorded_and_valid(passing_run) -> None:  # type: ignore[no-untyped-def]
    inputs = passing_run.run_dir / "backend" / "case-inputs"
    config = json.loads((inputs / "config.json").read_text())
    assert config["models"] == {"default": {"provider": "anthropic", "model": "standin-model"}}
    assert Path(config["projects"]).name == "projects.json"
    assert not (inputs / "models.json").exists()  # no base URL configured
    projects = json.loads((inputs / "projects.json").read_text())
    repo = projects["repos"][0]
    assert repo["name"] == "r1-string-slugify"
    assert repo["path"] == str((passing_run.run_dir / "workspace").resolve())
    assert repo["language"] == "python" and repo["packageManager"] == "pip"
    if not SHARED.is_dir():
        pytest.skip("../shared (Case's schemas) is absent")
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(projects, json.loads((SHARED / "case-projects.schema.json").read_text()))


def test_schema_check_of_projects(tmp_path: Path) -> None:
    """projects.json as the engine writes it, validated against Case's projects schema."""
    from cto_harness.core.fixtures import load_case
    from cto_harness.engines.case.inputs import make_projects
    from standin_helpers import REPO_ROOT

    if not SHARED.is_dir():
        pytest.skip("../shared (Case's schemas) is absent")
    jsonschema = pytest.importorskip("jsonschema")
    case = load_case(REPO_ROOT / "harness" / "evals" / "cases" / "r1-string-slugify")
    projects = make_projects(case.spec, tmp_path / "workspace", tmp_path / "remote.git").to_json()
    schema = json.loads((SHARED / "case-projects.schema.json").read_text())
    jsonschema.validate(projects, schema)
    assert projects["repos"][0]["path"] == str((tmp_path / "workspace").resolve())
