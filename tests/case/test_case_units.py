"""Units of the Case engine that need no provider: the exact command shape, the task and projects
models (strict, like Case's schemas), the brief, and the `gh`/`git` recorders (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from case_helpers import SHARED
from cto_harness.core.fixtures import load_case
from cto_harness.core.taskscan import outside_paths
from cto_harness.engines.case.command import CaseCommand, CommandShapeError, check_case_argv
from cto_harness.engines.case.guards import (
    collect_guard_records,
    inspect_remotes,
    install_guards,
    real_git,
)
from cto_harness.engines.case.inputs import CaseTask, make_task, render_brief, task_id
from standin_helpers import REPO_ROOT

CA = "/run/x/private/bin/ca"
TASK = "/run/x/private/case/tasks/r1-abc.task.json"
GOOD = [CA, "run", "--task", TASK, "--mode", "unattended"]


def test_case_command_builds_exactly_the_allowed_shape() -> None:
    argv = CaseCommand(Path(CA), Path(TASK)).argv()
    assert argv == GOOD
    check_case_argv(argv, binary=Path(CA), task_file=Path(TASK))


@pytest.mark.parametrize("argv", [
    [*GOOD, "--model", "x"],                                     # extra flag
    [*GOOD, "--version"],
    GOOD[:-1],                                                   # missing mode value
    GOOD[:4],                                                    # missing --mode
    [CA, "--task", TASK, "run", "--mode", "unattended"],         # reordered
    [CA, "run", "--mode", "unattended", "--task", TASK],         # reordered
    [CA, "run", "--task", TASK, "--mode", "attended"],           # attended waits on stdin
    [CA, "run", "-t", TASK, "--mode", "unattended"],             # another spelling
    ["ca", "run", "--task", TASK, "--mode", "unattended"],       # not absolute
    ["/bin/sh", "run", "--task", TASK, "--mode", "unattended"],  # not ca
    [CA, "run", "--task", "task.json", "--mode", "unattended"],  # relative, wrong suffix
    [CA, "run", "--task", "/x/t.md", "--mode", "unattended"],
    [CA, "--help"],
    [],
])
def test_any_other_shape_is_refused(argv: list[str]) -> None:
    with pytest.raises(CommandShapeError):
        check_case_argv(argv)


def test_command_must_name_the_hashed_copy_and_the_task() -> None:
    with pytest.raises(CommandShapeError):
        check_case_argv(GOOD, binary=Path("/other/bin/ca"))
    with pytest.raises(CommandShapeError):
        check_case_argv(GOOD, task_file=Path("/run/x/other.task.json"))


def test_task_model_is_strict_and_matches_case_schema() -> None:
    task = make_task("r1-string-slugify", "run-1", "r1-string-slugify", "2026-11-23T10:00:00Z")
    data = task.to_json()
    assert data == {"id": task_id("r1-string-slugify", "run-1"), "status": "active",
                    "created": "2026-11-23T10:00:00Z", "repo": "r1-string-slugify",
                    "mode": "unattended", "issueType": "freeform"}
    assert task_id("r1-string-slugify", "run-1") != task_id("r1-string-slugify", "run-2")
    with pytest.raises(ValidationError):
        CaseTask.model_validate({**data, "extra": 1})
    with pytest.raises(ValidationError):
        CaseTask.model_validate({**data, "status": "done"})
    with pytest.raises(ValidationError):
        CaseTask.model_validate({**data, "id": "Not A Slug"})
    with pytest.raises(ValidationError):
        CaseTask.model_validate({k: v for k, v in data.items() if k != "repo"})
    if SHARED.is_dir():
        jsonschema = pytest.importorskip("jsonschema")
        schema = json.loads((SHARED / "case-task.schema.json").read_text())
        jsonschema.validate(data, schema, format_checker=jsonschema.FormatChecker())
        # What the schema refuses, our model refuses too.
        for bad in ({**data, "extra": 1}, {**data, "status": "done"}):
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(bad, schema)


def test_brief_has_the_contract_and_no_outside_path(tmp_path: Path) -> None:
    case = load_case(REPO_ROOT / "harness" / "evals" / "cases" / "r1-string-slugify")
    task = make_task(case.spec.id, "run-1", case.spec.id, "2026-11-23T10:00:00Z")
    brief = render_brief(case.spec, task)
    for needle in ("Implement slugify", "`slugkit/text.py`", "changing the tests",
                   "python3 -I -m unittest discover", "at least 4 tests", task.id):
        assert needle in brief
    assert outside_paths([brief], tmp_path / "workspace") == []


# --- the gh and git recorders ------------------------------------------------------------------


def _git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture
def guarded(tmp_path: Path):  # type: ignore[no-untyped-def]
    from cto_harness.core.workspace import init_workspace_repo
    from cto_harness.git import git_env

    workspace, remote = tmp_path / "workspace", tmp_path / "private" / "remote.git"
    workspace.mkdir()
    (workspace / "a.txt").write_text("a\n")
    home = tmp_path / "home"
    init_workspace_repo(workspace, remote, home)
    other = tmp_path / "elsewhere.git"
    subprocess.run(["git", "init", "-q", "--bare", str(other)], check=True)
    bin_dir, records = tmp_path / "private" / "bin", tmp_path / "private" / "records"
    install_guards(bin_dir, records, remote, real_git())
    env = git_env(home) | {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return workspace, remote, other, records, env


def test_gh_records_and_refuses(guarded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace, _remote, _other, records, env = guarded
    done = subprocess.run(["gh", "pr", "create", "--title", "x"], cwd=workspace, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 1 and "refused by cto-harness" in done.stderr
    backend = tmp_path / "backend"
    backend.mkdir()
    forbidden = collect_guard_records(records, backend)
    assert [(f.action, f.detail) for f in forbidden] == [("gh", "gh pr create --title x")]
    assert json.loads((backend / "gh-calls.jsonl").read_text())["argv"] == [
        "pr", "create", "--title", "x"]


def test_git_push_only_to_the_local_remote(guarded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace, remote, other, records, env = guarded
    assert _git("push", "-q", "origin", "HEAD", cwd=workspace, env=env).returncode == 0
    assert _git("push", "-q", cwd=workspace, env=env).returncode in (0, 128)  # default: origin
    assert _git("-C", str(workspace), "push", str(remote), "HEAD:refs/heads/x", cwd=tmp_path,
                env=env).returncode == 0
    refused = [
        ["push", str(other), "HEAD"],
        ["push", "--repo", str(other)],
        ["push", "https://example.invalid/x.git", "HEAD"],
        ["-c", f"remote.origin.pushurl={other}", "push", "origin", "HEAD"],
    ]
    for args in refused:
        done = _git(*args, cwd=workspace, env=env)
        assert done.returncode == 1 and "refused by cto-harness" in done.stderr, args
    # Nothing reached the other remote.
    assert _git("--git-dir", str(other), "for-each-ref", cwd=tmp_path).stdout == ""
    # Other git commands pass through to the real git.
    assert _git("status", "--short", cwd=workspace, env=env).returncode == 0
    backend = tmp_path / "backend"
    backend.mkdir()
    forbidden = collect_guard_records(records, backend)
    assert len(forbidden) == len(refused)
    assert all(f.action == "git_push_non_local" for f in forbidden)
    rows = [json.loads(x) for x in (backend / "git-push-attempts.jsonl").read_text().splitlines()]
    assert [r["allowed"] for r in rows] == [True, True, True, False, False, False, False]


def test_remotes_other_than_the_local_one_are_found(guarded) -> None:  # type: ignore[no-untyped-def]
    workspace, remote, _other, _records, env = guarded
    assert inspect_remotes(workspace, remote, real_git()) == []
    _git("remote", "add", "upstream", "https://example.invalid/x.git", cwd=workspace, env=env)
    _git("config", "url.https://example.invalid/.insteadOf", "gh:", cwd=workspace, env=env)
    found = inspect_remotes(workspace, remote, real_git())
    assert {f.action for f in found} == {"git_remote_non_local"}
    assert len(found) == 2
    assert any("remote.upstream.url" in f.detail for f in found)
