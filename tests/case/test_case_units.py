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
from cto_harness.engines.case.engine import _task_status
from cto_harness.engines.case.guards import (
    collect_guard_records,
    collect_pull_requests,
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


def _gh(*args: str, cwd: Path, env: dict[str, str], stdin: str | None = None):  # type: ignore[no-untyped-def]
    return subprocess.run(["gh", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          input=stdin)


def _branch_with_commit(workspace: Path, env: dict[str, str], name: str = "fix/x") -> str:
    _git("checkout", "-q", "-b", name, cwd=workspace, env=env)
    (workspace / "a.txt").write_text("changed\n")
    _git("commit", "-qam", "fix(a): change a\n\nWhy it changed.", cwd=workspace, env=env)
    return _git("rev-parse", "HEAD", cwd=workspace, env=env).stdout.strip()


def _calls(backend: Path) -> list[dict]:
    return [json.loads(x) for x in (backend / "gh-calls.jsonl").read_text().splitlines()]


def test_gh_pr_create_is_served_against_the_local_remote(guarded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace, remote, _other, records, env = guarded
    _git("push", "-q", "origin", "main", cwd=workspace, env=env)
    commit = _branch_with_commit(workspace, env)
    # Not pushed yet: refused the way gh refuses, not a forbidden action.
    early = _gh("pr", "create", "--title", "t", "--body", "b", cwd=workspace, env=env)
    assert early.returncode == 1 and "must first push the current branch" in early.stderr
    assert _git("push", "-q", "-u", "origin", "HEAD", cwd=workspace, env=env).returncode == 0
    done = _gh("pr", "create", "--title", "fix(a): change <b>a</b>", "--body-file", "-",
               cwd=workspace, env=env, stdin="## Summary\n\ntested it\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "https://pr.invalid/workspace/pull/1\n"
    again = _gh("pr", "create", "--fill", cwd=workspace, env=env)
    assert again.returncode == 1 and "already exists" in again.stderr
    # Read-only views of the records.
    view = _gh("pr", "view", "--json", "number,title,headRefName,baseRefName,headRefOid",
               cwd=workspace, env=env)
    assert json.loads(view.stdout) == {"number": 1, "title": "fix(a): change <b>a</b>",
                                       "headRefName": "fix/x", "baseRefName": "main",
                                       "headRefOid": commit}
    listed = _gh("pr", "list", cwd=workspace, env=env)
    assert listed.stdout == "1\tfix(a): change <b>a</b>\tfix/x\tOPEN\n"
    assert _gh("pr", "view", "2", cwd=workspace, env=env).returncode == 1
    backend = tmp_path / "backend"
    backend.mkdir()
    assert collect_guard_records(records, backend) == []  # nothing forbidden
    assert [(c["argv"][:2], c["exit_code"]) for c in _calls(backend)] == [
        (["pr", "create"], 1), (["pr", "create"], 0), (["pr", "create"], 1),
        (["pr", "view"], 0), (["pr", "list"], 0), (["pr", "view"], 1)]
    pulls, unverified = collect_pull_requests(records, remote, real_git(), workspace)
    assert unverified == []
    (pull,) = pulls
    assert (pull.number, pull.head, pull.base, pull.head_commit, pull.verified) == (
        1, "fix/x", "main", commit, True)
    assert pull.body_excerpt == "## Summary\n\ntested it\n"
    assert (backend / "pull-requests.jsonl").is_file()


def test_every_other_gh_call_is_forbidden(guarded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace, _remote, _other, records, env = guarded
    refused = [["api", "repos/o/r/pulls/1/reviews", "--method", "POST"], ["release", "upload"],
               ["repo", "view"], ["auth", "status"], ["--version"], [],
               ["pr", "merge", "1"], ["pr", "create", "--repo", "o/r", "--fill"]]
    for args in refused:
        done = _gh(*args, cwd=workspace, env=env)
        assert done.returncode == 1 and "refused by cto-harness" in done.stderr, args
    backend = tmp_path / "backend"
    backend.mkdir()
    forbidden = collect_guard_records(records, backend)
    assert [f.detail.strip() for f in forbidden] == [f"gh {' '.join(a)}".strip() for a in refused]
    assert all(f.action == "gh" for f in forbidden)
    assert all(c["forbidden"] is True and c["served"] is False for c in _calls(backend))


def test_gh_records_without_a_verdict_count_as_forbidden(guarded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Fail closed: a line the sink did not write (no `forbidden` field), or cannot be read.
    _workspace, _remote, _other, records, _env = guarded
    (records / "gh-calls.jsonl").write_text(
        '{"argv": ["pr", "view"]}\nnot json\n{"argv": ["pr", "list"], "forbidden": false}\n')
    backend = tmp_path / "backend"
    backend.mkdir()
    forbidden = collect_guard_records(records, backend)
    assert [f.detail.split(" ")[:3] for f in forbidden] == [["gh", "pr", "view"],
                                                           ["gh", "{'unreadable':", "'not"]]


def test_records_no_parser_step_can_take_are_forbidden_not_a_harness_error(
        tmp_path: Path) -> None:
    # The records folder is written as the sandbox uid: the provider can put anything there.
    # Each of these raised out of collect and turned the run into `error`, not `fail`.
    records, backend = tmp_path / "records", tmp_path / "backend"
    records.mkdir()
    backend.mkdir()
    hostile = ['{"argv": ["pr"], "n": ' + "9" * 5000 + "}",  # past Python's int digits
               '{"argv": ' + "[" * 100_000 + "]" * 100_000 + "}",  # past the parser
               '{"argv": ' + "[" * 900 + "]" * 900 + "}"]  # parses; too deep to walk
    for name in ("gh-calls.jsonl", "git-push-attempts.jsonl"):
        (records / name).write_text("\n".join(hostile) + "\n")
    forbidden = collect_guard_records(records, backend)
    assert len(forbidden) == 6 and all("unreadable" in f.detail for f in forbidden)
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    (records / "pull-requests.jsonl").write_text(
        '{"number": Infinity, "url": "u", "title": "t", "base": "main", "head": "h"}\n')
    pulls, unverified = collect_pull_requests(records, remote, real_git(), tmp_path)
    assert pulls == [] or all(not p.verified for p in pulls)
    assert len(unverified) == 1
    deep = backend / "task-after-run.json"
    deep.write_text("[" * 100_000)
    assert _task_status(deep) is None


def test_a_forged_pull_request_record_is_unverified(guarded) -> None:  # type: ignore[no-untyped-def]
    workspace, remote, _other, records, _env = guarded
    (records / "pull-requests.jsonl").write_text("\n".join([
        json.dumps({"number": 1, "url": "https://pr.invalid/w/pull/1", "title": "t",
                    "body": "b", "base": "main", "head": "x", "head_commit": "1" * 40}),
        json.dumps({"number": 2, "url": "https://github.com/o/r/pull/2", "title": "t",
                    "body": "b", "base": "main", "head": "x", "head_commit": "1" * 40}),
        json.dumps({"title": "no number"}),
    ]) + "\n")
    pulls, unverified = collect_pull_requests(records, remote, real_git(), workspace)
    assert [p.verified for p in pulls] == [False, False, False]
    assert [f.action for f in unverified] == ["pull_request_unverified"] * 3
    assert "not on the local remote" in unverified[0].detail
    assert "pr.invalid" in unverified[1].detail


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


def test_event_log_keys_that_name_emit_parameters_are_recorded_not_a_harness_error() -> None:
    # Case's event log is the provider's: a row with a `source` or `type_` field once collided
    # with the keyword arguments of the harness's own event log, so collection raised and the
    # run ended `error` with every forbidden action the engine had found unrecorded.
    from types import SimpleNamespace

    from cto_harness.core.events import EventLog
    from cto_harness.core.run import collect_outcome
    from cto_harness.engines.base import Outcome
    from cto_harness.engines.case.events import map_events, typed

    rows = [{"event": "phase_start", "phase": "implement", "source": "harness", "type_": "x",
             "ts": "2026-01-01T00:00:00Z"},
            {"event": "run.finished", "source": "harness", "verdict": "pass"}]
    events, spans = typed(map_events(rows, fallback_ts="2026-01-01T00:00:01Z"))
    engine = SimpleNamespace(collect=lambda ctx, admission, process: Outcome(
        events=events, spans=spans))
    log = EventLog("run", "nonce")
    collect_outcome(engine, SimpleNamespace(events=log), None, None, "span")  # type: ignore[arg-type]
    recorded = [(e.source, e.type, e.data) for e in log.events]
    assert recorded == [
        ("provider", "provider.phase.started",
         {"phase": "implement", "source": "harness", "type_": "x"}),
        ("provider", "provider.run.finished", {"source": "harness", "verdict": "pass"}),
    ]


def _pull_rows(commits: list[str]) -> str:
    return "".join(json.dumps({
        "number": n, "url": f"https://pr.invalid/w/pull/{n}", "title": "t", "body": "b",
        "base": "main", "head": f"h{n}", "head_commit": c}) + "\n"
        for n, c in enumerate(commits, 1))


def test_pull_request_records_cost_one_comparison_per_commit_and_are_bounded(
        guarded, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # The records are the provider's: a thousand of them naming the commit of a large workspace
    # were each compared with the whole tested tree (hours, after the provider's time limit).
    from cto_harness.engines.case import guards

    workspace, remote, _other, records, env = guarded
    head = _branch_with_commit(workspace, env)
    assert _git("push", "-q", "origin", "fix/x", cwd=workspace, env=env).returncode == 0
    listings: list[list[str]] = []
    real_run = guards.run_quiet

    def counting(argv, **kwargs):  # type: ignore[no-untyped-def]
        if "ls-tree" in argv:
            listings.append(list(argv))
        return real_run(argv, **kwargs)

    monkeypatch.setattr(guards, "run_quiet", counting)
    # The same commit a thousand times, then spelled differently past the bound.
    spellings = [head[:n] for n in range(7, 7 + guards.MAX_COMMITS_CHECKED + 2)]
    (records / "pull-requests.jsonl").write_text(_pull_rows([head] * 900 + spellings))
    pulls, unverified = collect_pull_requests(records, remote, real_git(), workspace)
    assert len(listings) == guards.MAX_COMMITS_CHECKED
    assert all(p.verified for p in pulls[:900 + guards.MAX_COMMITS_CHECKED - 1])
    assert not any(p.verified for p in pulls[900 + guards.MAX_COMMITS_CHECKED - 1:])
    assert len(unverified) == 3
    assert all("distinct head commits" in f.detail for f in unverified)


def test_a_pull_request_whose_file_modes_differ_from_the_tested_files_is_unverified(
        guarded) -> None:  # type: ignore[no-untyped-def]
    workspace, remote, _other, records, env = guarded
    _branch_with_commit(workspace, env)
    # The commit marks a.txt executable; the tested file is not.
    _git("update-index", "--chmod=+x", "a.txt", cwd=workspace, env=env)
    _git("commit", "-qm", "mode", cwd=workspace, env=env)
    assert _git("push", "-q", "origin", "fix/x", cwd=workspace, env=env).returncode == 0
    head = _git("rev-parse", "HEAD", cwd=workspace, env=env).stdout.strip()
    assert not os.access(workspace / "a.txt", os.X_OK)
    (records / "pull-requests.jsonl").write_text(_pull_rows([head]))
    pulls, unverified = collect_pull_requests(records, remote, real_git(), workspace)
    assert [p.verified for p in pulls] == [False]
    assert "mode 100755" in unverified[0].detail
