"""Case ids, case.toml validation and the task-contract scan: bad input is refused clearly and
nothing is written outside the runs dir."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import HARNESS_ROOT, REPO_ROOT, CaseFactory, files_outside
from cto_harness.core.run import execute_run
from cto_harness.errors import UsageError
from cto_harness.evidence.verify import verify_bundle

RUN_CASE = REPO_ROOT / "harness" / "evals" / "run-case.sh"


@pytest.mark.parametrize(
    "case_id", ["../x", "../../etc/passwd", "/abs", "R1", "-flag", "a/b", "", ".hidden", "a b"]
)
def test_malformed_case_ids_are_usage_errors_writing_nothing(case_id: str, runs_dir: Path) -> None:
    with pytest.raises(UsageError, match="invalid case id"):
        execute_run(case_id, harness_root=HARNESS_ROOT)
    assert not runs_dir.exists()


def test_path_traversal_through_the_script_is_exit_64_with_one_line(runs_dir: Path) -> None:
    proc = subprocess.run([str(RUN_CASE), "../x"], capture_output=True, text=True)
    assert proc.returncode == 64
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "invalid case id" in proc.stderr
    assert not runs_dir.exists()


def test_an_unknown_case_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown case id 'no-such-case'"):
        execute_run("no-such-case", harness_root=HARNESS_ROOT)


BAD_TOML = {
    "not toml": "id = \n[[",
    "unknown field": lambda t: t + '\nsurprise = "field"\n',
    "absolute allowed path": lambda t: t.replace('["slugkit/text.py"]', '["/etc/passwd"]'),
    "climbing allowed path": lambda t: t.replace('["slugkit/text.py"]', '["../outside.py"]'),
    "missing verification": lambda t: t.split("[verification]")[0],
    "empty command": lambda t: t.replace('command = ["python3"', 'command = [] #'),
    "id mismatch": lambda t: t.replace('id = "bad-case"', 'id = "other-case"'),
}


@pytest.mark.parametrize("problem", sorted(BAD_TOML))
def test_a_malformed_case_toml_blocks_with_a_bundle_and_writes_nothing_outside(
    problem: str, case_factory: CaseFactory, harness_home: Path, tmp_path: Path
) -> None:
    edit = BAD_TOML[problem]
    root = case_factory("bad-case", **({"toml": edit} if isinstance(edit, str) else
                                       {"toml_edit": edit}))
    before = files_outside(tmp_path, harness_home)
    result = execute_run("bad-case", harness_root=root)
    assert result.report.verdict == "blocked"
    assert result.exit_code == 2
    assert [b.code for b in result.report.blockers] == ["task_contract_invalid"]
    assert result.report.case_process_started is False
    assert "case.toml" in result.report.blockers[0].message
    assert files_outside(tmp_path, harness_home) == before
    verify_bundle(result.run_dir)


@pytest.mark.parametrize(
    "leak",
    ["/home/alice/target-repo", "~/src/private", "see /etc/shadow for details"],
)
def test_a_task_naming_an_outside_path_is_blocked(leak: str, case_factory: CaseFactory) -> None:
    root = case_factory("leaky-task", toml_edit=lambda t: t.replace(
        'title = "Implement slugify"', f'title = "Implement slugify ({leak})"'))
    result = execute_run("leaky-task", harness_root=root)
    assert result.report.verdict == "blocked"
    assert result.report.blockers[0].code == "task_contract_invalid"
    assert result.report.no_target_inspection.task_scan["passed"] is False
    assert result.report.case_process_started is False


def test_urls_and_relative_paths_are_not_outside_paths(case_factory: CaseFactory) -> None:
    root = case_factory("url-task", toml_edit=lambda t: t.replace(
        'title = "Implement slugify"',
        'title = "Implement slugify (see https://example.invalid/a/b and ./slugkit/x, a/b)"'))
    result = execute_run("url-task", harness_root=root)
    assert result.report.verdict == "pass"
    assert result.report.no_target_inspection.task_scan["outside_paths"] == []


def test_a_fake_solution_that_escapes_its_case_folder_is_blocked(
    case_factory: CaseFactory, tmp_path: Path
) -> None:
    root = case_factory("escaping-solution")
    outside = tmp_path / "outside-solution"
    outside.mkdir()
    solution = root / "evals" / "cases" / "escaping-solution" / "fake" / "solution"
    shutil.rmtree(solution)
    solution.symlink_to(outside)
    result = execute_run("escaping-solution", harness_root=root)
    assert result.report.verdict == "blocked"
    assert [b.code for b in result.report.blockers] == ["task_contract_invalid"]
    assert "escapes its root" in result.report.blockers[0].message
    assert result.report.case_process_started is False
