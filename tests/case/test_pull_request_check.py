"""The pull-request check runs git only under a config the harness wrote: the provider owns the
local remote (it pushes there), config included. Real git, no provider binary needed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cto_harness.engines.case.guards import PR_RECORD, collect_pull_requests, real_git
from cto_harness.git import git_env


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=git_env(), capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


def committed(work: Path, files: dict[str, str]) -> str:
    """A repository at `work` with one commit of `files`; returns its id."""
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "c", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def pull_request(records: Path, number: int, commit: str) -> None:
    records.mkdir(parents=True, exist_ok=True)
    row = {"number": number, "url": f"https://pr.invalid/r/pull/{number}", "title": "t",
           "base": "main", "head": "fix", "head_commit": commit, "body": ""}
    with open(records / PR_RECORD, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")


def test_a_remote_config_naming_a_command_runs_nothing_and_verifies_nothing(
        tmp_path: Path) -> None:
    work = tmp_path / "work"
    pushed = committed(work, {"a.txt": "one\n"})
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    git("push", "-q", str(remote), "main", cwd=work)
    (work / "a.txt").write_text("two\n")
    git("commit", "-q", "-am", "two", cwd=work)
    not_pushed = git("rev-parse", "HEAD", cwd=work)

    # What a provider can write into the remote it owns: a partial clone whose promisor remote
    # fetches a missing object with a shell command of its choosing.
    marker = tmp_path / "ran.txt"
    config = remote / "config"
    for key, value in (("core.repositoryformatversion", "1"),
                       ("extensions.partialClone", "origin"),
                       ("remote.origin.url", str(work)), ("remote.origin.promisor", "true"),
                       ("remote.origin.uploadpack",
                        f"f() {{ id > {marker}; exec git-upload-pack \"$@\"; }}; f")):
        git("config", "--file", str(config), key, value)
    records = tmp_path / "records"
    pull_request(records, 1, pushed)
    pull_request(records, 2, not_pushed)

    (work / "a.txt").write_text("one\n")  # the tested files are the pushed commit's
    pulls, forbidden = collect_pull_requests(records, remote, real_git(), work)

    assert not marker.exists(), marker.read_text()
    assert [(p.number, p.verified) for p in pulls] == [(1, True), (2, False)]
    assert pulls[1].problem == "its head commit is not on the local remote"
    assert [f.action for f in forbidden] == ["pull_request_unverified"]


def test_borrowed_objects_do_not_verify_a_pull_request(tmp_path: Path) -> None:
    # An alternates file makes another repository's objects the remote's: the commit exists
    # only in the workspace, never pushed.
    work = tmp_path / "work"
    head = committed(work, {"a.txt": "x\n"})
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    (remote / "objects" / "info" / "alternates").write_text(f"{work / '.git' / 'objects'}\n")
    records = tmp_path / "records"
    pull_request(records, 3, head)

    pulls, _forbidden = collect_pull_requests(records, remote, real_git(), work)

    assert [(p.number, p.verified) for p in pulls] == [(3, False)]


def test_a_pull_request_of_code_the_harness_did_not_test_is_unverified(tmp_path: Path) -> None:
    # The provider pushes a commit with other code than it leaves in the workspace (which is
    # what the harness diffs and tests): the pull request would ship untested code.
    work = tmp_path / "work"
    head = committed(work, {"a.txt": "tested\n"})
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    git("push", "-q", str(remote), "main", cwd=work)
    records = tmp_path / "records"
    pull_request(records, 4, head)
    (work / ".case").mkdir()
    (work / ".case" / "status").write_text("two\n")  # bookkeeping: not compared

    pulls, _ = collect_pull_requests(records, remote, real_git(), work, (".case",))
    assert [(p.number, p.verified) for p in pulls] == [(4, True)]

    (work / "a.txt").write_text("other\n")
    pulls, forbidden = collect_pull_requests(records, remote, real_git(), work, (".case",))
    assert [(p.number, p.verified) for p in pulls] == [(4, False)]
    assert pulls[0].problem == "its head commit's a.txt is not the file the harness tested"
    assert [f.action for f in forbidden] == ["pull_request_unverified"]
    (work / "a.txt").unlink()
    pulls, _ = collect_pull_requests(records, remote, real_git(), work, (".case",))
    assert pulls[0].problem == "its head commit holds a.txt, which the tested workspace does not"


def test_a_pull_request_that_leaves_out_a_tested_file_is_unverified(tmp_path: Path) -> None:
    # Every file the pull request holds is byte for byte a tested one, but it deletes the tests
    # (or the solution): merged, it would not be the code the harness tested.
    work = tmp_path / "work"
    committed(work, {"a.txt": "tested\n", "tests/test_a.py": "pristine\n"})
    git("rm", "-q", "tests/test_a.py", cwd=work)
    git("commit", "-q", "-m", "drop the tests", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-q", "HEAD~1", "--", "tests/test_a.py", cwd=work)  # tested as it was
    git("reset", "-q", cwd=work)
    assert _unverified(tmp_path, work, head) == ("its head commit lacks tests/test_a.py, which "
                                                 "the tested workspace holds")


def _unverified(tmp_path: Path, work: Path, head: str) -> str | None:
    """`head` pushed to a bare remote and asked for as pull request #5: it must be unverified,
    a forbidden action; its problem."""
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    git("push", "-q", str(remote), "main", cwd=work)
    records = tmp_path / "records"
    pull_request(records, 5, head)
    pulls, forbidden = collect_pull_requests(records, remote, real_git(), work, (".case",))
    assert [(p.number, p.verified) for p in pulls] == [(5, False)]
    assert [f.action for f in forbidden] == ["pull_request_unverified"]
    return pulls[0].problem


def test_a_record_holding_a_lone_surrogate_is_read_not_raised(tmp_path: Path) -> None:
    # The records folder is the provider's to write: valid JSON that is not UTF-8 text.
    records = tmp_path / "records"
    records.mkdir()
    (records / PR_RECORD).write_text(
        '{"number": 6, "url": "https://pr.invalid/r/pull/6", "title": "t\\udcff", "base": '
        '"main", "head": "fix", "head_commit": "0", "body": "\\ud800"}\n')
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    (tmp_path / "work").mkdir()

    pulls, forbidden = collect_pull_requests(records, remote, real_git(), tmp_path / "work")
    assert [(p.number, p.verified) for p in pulls] == [(6, False)]
    assert [f.action for f in forbidden] == ["pull_request_unverified"]


def test_a_flood_of_record_lines_is_bounded(tmp_path: Path) -> None:
    # Three bytes a line (`{}`) would be millions of report entries, and every pull-request
    # line that looks like one runs git: past the bound, one entry says what was not read.
    from cto_harness.engines.case.guards import (
        GH_RECORD,
        MAX_RECORD_ROWS,
        collect_guard_records,
    )

    records = tmp_path / "records"
    records.mkdir()
    (records / GH_RECORD).write_text("{}\n" * 50_000)
    row = json.dumps({"number": 1, "url": "https://pr.invalid/r/pull/1", "title": "t",
                      "base": "main", "head": "fix", "head_commit": "0" * 40, "body": ""})
    (records / PR_RECORD).write_text((row + "\n") * 5_000)
    backend = tmp_path / "backend"
    backend.mkdir()
    forbidden = collect_guard_records(records, backend)
    assert len(forbidden) == MAX_RECORD_ROWS + 1
    assert "49000 more lines" in forbidden[0].detail
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote))
    (tmp_path / "work").mkdir()
    pulls, unverified = collect_pull_requests(records, remote, real_git(), tmp_path / "work")
    assert len(pulls) == len(unverified) == MAX_RECORD_ROWS + 1


def test_case_event_logs_are_read_within_one_budget(tmp_path: Path,
                                                    monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Many event logs, each under the per-log size, are still one budget together.
    from types import SimpleNamespace

    from cto_harness.engines.case import engine

    monkeypatch.setattr(engine, "_MAX_EVENT_LOG_BYTES", 10_000)
    folder = tmp_path / ".case" / "t1" / "events"
    folder.mkdir(parents=True)
    for n in range(20):
        (folder / f"run-{n:02d}.jsonl").write_bytes(b"{}\n" * 3000)
    logs, not_read = engine.CaseEngine._event_logs(SimpleNamespace(workspace=tmp_path), "t1")  # type: ignore[arg-type]
    assert sum(len(data) for _rel, data in logs) <= 10_000 and not_read == 0
    # And in number: ~260,000 empty logs fit the workspace limit, each read and named in
    # report.json; past the cap they are counted, not read.
    monkeypatch.setattr(engine, "_MAX_EVENT_LOG_FILES", 5)
    logs, not_read = engine.CaseEngine._event_logs(SimpleNamespace(workspace=tmp_path), "t1")  # type: ignore[arg-type]
    assert len(logs) <= 5 and not_read == 15
    from cto_harness.fsutil import read_jsonl

    rows, bad = read_jsonl(folder / "run-00.jsonl", limit=engine.MAX_EVENT_ROWS // 1000)
    assert (len(rows), bad) == (engine.MAX_EVENT_ROWS // 1000, 0)


def test_a_pull_request_carrying_bookkeeping_is_unverified(tmp_path: Path) -> None:
    # The engine's bookkeeping is never tested (the verification leaves it out), so a pull
    # request holding it would merge code no test ran; Case's agents leave `.case/` out of
    # every commit.
    work = tmp_path / "work"
    head = committed(work, {"a.txt": "tested\n", ".case/run.py": "print('never tested')\n"})
    assert _unverified(tmp_path, work, head) == ("its head commit holds .case/run.py, the "
                                                 "engine's bookkeeping, which is not tested")
