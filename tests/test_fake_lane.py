"""The default lane end to end: every fixture case passes, wrong and out-of-bounds solutions
fail, and every bundle is complete and checkable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import HARNESS_ROOT, CaseFactory
from cto_harness.core.fixtures import list_case_ids
from cto_harness.core.run import execute_run
from cto_harness.evidence.verify import BundleInvalid, verify_bundle

# DESIGN section 7: the fields report.json must carry.
DESIGN_REPORT_FIELDS = {
    "schema_version", "run_id", "run_dir", "case_id", "engine", "stage", "verdict", "blockers",
    "source_admission_status", "case_process_started", "backend_exit_code",
    "allowed_writes_passed", "changed_files", "command", "provider", "model", "timing",
    "verification", "provider_claims", "baseline", "isolation", "no_target_inspection",
    "artifacts", "freshness",
}
BUNDLE_FILES = [
    "report.json", "report.md", "events.normalized.jsonl", "trace.jsonl", "patch.diff",
    "test.log", "backend/stdout.log", "backend/stderr.log", "artifacts.sha256", "freshness.json",
]


@pytest.mark.parametrize("case_id", list_case_ids(HARNESS_ROOT))
def test_every_fixture_case_passes_with_a_complete_bundle(case_id: str) -> None:
    result = execute_run(case_id, "fake", harness_root=HARNESS_ROOT)
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["verdict"] == "pass", report["blockers"] or report["pass_conditions"]
    assert result.exit_code == 0
    assert set(report) >= DESIGN_REPORT_FIELDS
    assert report["blockers"] == []
    assert report["case_process_started"] is True
    assert report["backend_exit_code"] == 0
    assert report["allowed_writes_passed"] is True
    assert report["changed_files"], "a passing fake solution changes files"
    assert report["verification"]["tests_ran"] >= 4
    assert report["verification"]["tests_failed"] == 0
    for rel in BUNDLE_FILES:
        assert (result.run_dir / rel).is_file(), rel
    assert list((result.run_dir / "task").iterdir())
    subprocess.run(["sha256sum", "-c", "--quiet", "artifacts.sha256"], cwd=result.run_dir,
                   check=True)
    assert verify_bundle(result.run_dir).run_id == report["run_id"]


def test_patch_applies_to_the_pristine_fixture_with_git_apply(tmp_path: Path) -> None:
    result = execute_run("r2-inventory-report", harness_root=HARNESS_ROOT)
    pristine = tmp_path / "pristine"
    shutil.copytree(HARNESS_ROOT / "evals/cases/r2-inventory-report/repo", pristine)
    subprocess.run(["git", "apply", "--check", str(result.run_dir / "patch.diff")], cwd=pristine,
                   check=True)
    subprocess.run(["git", "apply", str(result.run_dir / "patch.diff")], cwd=pristine, check=True)
    solution = HARNESS_ROOT / "evals/cases/r2-inventory-report/fake/solution/inventory/parser.py"
    assert (pristine / "inventory/parser.py").read_text() == solution.read_text()


def test_a_change_committed_to_git_by_the_agent_is_still_seen() -> None:
    result = execute_run("r3-config-merge", harness_root=HARNESS_ROOT)
    assert result.report.verdict == "pass"
    assert [c.path for c in result.report.changed_files] == ["confmerge/merge.py"]
    log = subprocess.run(["git", "log", "--format=%s"], cwd=result.run_dir / "workspace",
                         capture_output=True, text=True, check=True).stdout
    assert log.splitlines()[0] == "fake solution", "the fake really committed its change"
    assert "deep_merge" in (result.run_dir / "patch.diff").read_text()


def test_a_wrong_solution_fails(case_factory: CaseFactory) -> None:
    root = case_factory("wrong-slugify", files={
        "fake/solution/slugkit/text.py": "def slugify(value):\n    return value.lower()\n",
    })
    result = execute_run("wrong-slugify", harness_root=root)
    assert result.report.verdict == "fail"
    assert result.exit_code == 1
    assert result.report.verification.status == "failed"
    assert result.report.verification.tests_failed > 0
    assert result.report.pass_conditions["harness_verification_passed"] is False
    verify_bundle(result.run_dir)


def test_a_write_outside_the_allowed_paths_fails(case_factory: CaseFactory) -> None:
    solution = (HARNESS_ROOT / "evals/cases/r1-string-slugify/fake/solution/slugkit/text.py")
    root = case_factory("sneaky-slugify", files={
        "fake/solution/slugkit/text.py": solution.read_text(),
        "fake/solution/slugkit/extra.py": "SNEAKY = True\n",
    })
    result = execute_run("sneaky-slugify", harness_root=root)
    assert result.report.verdict == "fail"
    assert result.report.allowed_writes_passed is False
    flagged = {c.path: c.allowed for c in result.report.changed_files}
    assert flagged == {"slugkit/text.py": True, "slugkit/extra.py": False}
    assert result.report.verification.status == "passed", "tests pass; the write still fails it"


def test_editing_the_tests_cannot_make_a_wrong_solution_pass(case_factory: CaseFactory) -> None:
    root = case_factory("test-editor", files={
        "fake/solution/slugkit/text.py": "def slugify(value):\n    return ''\n",
        "fake/solution/tests/test_text.py": "import unittest\n\n\nclass T(unittest.TestCase):\n"
        "    def test_ok(self):\n        pass\n",
        "fake/solution/tests/test_extra.py": "import unittest\n",
    }, toml_edit=lambda t: t.replace('allowed_paths = ["slugkit/text.py"]',
                                     'allowed_paths = ["slugkit/text.py", "tests/**"]'))
    result = execute_run("test-editor", harness_root=root)
    verification = result.report.verification
    assert set(verification.restored_files) == {"tests/test_text.py", "tests/test_extra.py"}
    assert verification.status == "failed"
    assert result.report.verdict == "fail"


def test_a_solution_that_changes_nothing_fails(case_factory: CaseFactory) -> None:
    root = case_factory("idle-agent", toml_edit=lambda t: t.replace(
        'overlay = "fake/solution"', 'overlay = "fake/nothing"'))
    result = execute_run("idle-agent", harness_root=root)
    assert result.report.changed_files == []
    assert result.report.verdict == "fail"
    assert result.report.pass_conditions["expected_changes_present"] is False


def test_one_changed_byte_fails_verify() -> None:
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    verify_bundle(result.run_dir)
    log = result.run_dir / "test.log"
    data = bytearray(log.read_bytes())
    data[0] ^= 0x01
    log.write_bytes(bytes(data))
    with pytest.raises(BundleInvalid, match=r"digest mismatch: test\.log"):
        verify_bundle(result.run_dir)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda d: (d / "backend" / "extra.txt").write_text("planted\n"), "not in artifacts"),
        (lambda d: (d / "freshness.json").write_text(
            (d / "freshness.json").read_text().replace('"nonce": "', '"nonce": "0')),
         "freshness"),
        (lambda d: (d / "report.md").unlink(), "missing"),
    ],
)
def test_verify_names_the_first_discrepancy(tamper, message: str) -> None:  # type: ignore[no-untyped-def]
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    tamper(result.run_dir)
    with pytest.raises(BundleInvalid, match=message):
        verify_bundle(result.run_dir)


def test_a_bundle_copied_from_an_older_run_is_stale() -> None:
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    old = result.run_dir / "test.log"
    os.utime(old, (1_000_000_000, 1_000_000_000))
    with pytest.raises(BundleInvalid, match=r"predates the run: test\.log"):
        verify_bundle(result.run_dir)


def test_events_and_trace_carry_the_run_identity() -> None:
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    events = [json.loads(x) for x in (result.run_dir / "events.normalized.jsonl").read_text()
              .splitlines()]
    types = [e["type"] for e in events]
    for expected in ("run.started", "gate.checked", "provider.process.started",
                     "provider.phase.ended", "verification.finished", "run.finished"):
        assert expected in types
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["source"] for e in events} == {"harness", "provider"}
    spans = [json.loads(x) for x in (result.run_dir / "trace.jsonl").read_text().splitlines()]
    root = [s for s in spans if s["parent_span_id"] is None]
    assert len(root) == 1 and root[0]["name"] == "cto-harness.run"
    ids = {s["span_id"] for s in spans}
    assert all(s["parent_span_id"] in ids for s in spans if s["parent_span_id"])
    assert {s["trace_id"] for s in spans} == {root[0]["trace_id"]}
    assert "provider.phase.implement" in {s["name"] for s in spans}


@pytest.mark.parametrize("planted", ["config", "gitdir"])
def test_a_fixture_repo_carrying_its_own_git_folder_is_refused(
        case_factory: CaseFactory, tmp_path: Path, planted: str) -> None:
    """The harness runs `git init/add/commit` in the copy of repo/ as itself, unconfined: a
    `.git` in repo/ ran its `core.fsmonitor` command as the operator, and a `gitdir:` file had
    the harness commit the fixture into another repository."""
    root = case_factory("own-git")
    repo = root / "evals/cases/own-git/repo"
    marker = tmp_path / "fsmonitor-ran"
    target = tmp_path / "target"
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    if planted == "config":
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        subprocess.run(["git", "-C", str(repo), "config", "core.fsmonitor",
                        f"sh -c 'id > {marker}'; false"], check=True)
    else:
        (repo / ".git").write_text(f"gitdir: {target / '.git'}\n")
    result = execute_run("own-git", harness_root=root)
    assert result.report.verdict == "blocked"
    assert [b.code for b in result.report.blockers] == ["task_contract_invalid"]
    assert "repo/.git" in result.report.blockers[0].message
    assert not marker.exists(), "the fixture's git config ran a command as the harness"
    refs = subprocess.run(["git", "-C", str(target), "for-each-ref"], capture_output=True,
                          text=True, check=True)
    assert refs.stdout == "", "the harness committed into another repository"
