"""`cto-harness case new` and `case check`: a scaffold that is sound once its TODOs are gone,
and each named check failing on a case that breaks exactly what it checks (real runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

from conftest import REPO_ROOT, CaseFactory
from cto_harness.contracts import CaseSpec
from cto_harness.core.authoring import CHECK_NAMES, case_toml, check_case, scaffold_case
from cto_harness.core.fixtures import cases_root, load_case
from cto_harness.errors import UsageError


def _results(root: Path, case_id: str, **kwargs: object) -> dict[str, tuple[bool, str]]:
    result = check_case(root, case_id, **kwargs)  # type: ignore[arg-type]
    assert [c.name for c in result.checks] == list(CHECK_NAMES)
    return {c.name: (c.passed, c.detail) for c in result.checks}


def _failed(results: dict[str, tuple[bool, str]]) -> set[str]:
    return {name for name, (passed, _) in results.items() if not passed}


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cto_harness", "case", *args,
                           "--harness-root", str(root)], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300)


def test_a_new_case_is_valid_and_sound_but_for_its_todos(case_factory: CaseFactory) -> None:
    root = case_factory("unused")  # a private copy of the harness folder
    proc = _cli(root, "new", "my-case", "--title", 'Add "two" numbers')
    assert proc.returncode == 0, proc.stderr
    folder = Path(proc.stdout.strip())
    assert folder == cases_root(root) / "my-case"
    raw = tomllib.loads((folder / "case.toml").read_text())
    schema = json.loads((REPO_ROOT / "schemas" / "case.schema.json").read_text())
    jsonschema.validate(raw, schema)
    assert load_case(folder).spec.title == 'Add "two" numbers'
    assert "TODO" in (folder / "case.toml").read_text()

    results = _results(root, "my-case")
    assert _failed(results) == {"no_todo_markers"}, results
    assert "3 ran, 0 passed, 3 failed" in results["pristine_tests_fail"][1]

    # Once the TODO lines are replaced, every check holds: exit 0.
    text = (folder / "case.toml").read_text()
    (folder / "case.toml").write_text("\n".join(line for line in text.splitlines()
                                                if "TODO" not in line) + "\n")
    proc = _cli(root, "check", "my-case", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and all(c["passed"] for c in report["checks"])


def test_case_new_refuses_an_existing_or_malformed_id(case_factory: CaseFactory) -> None:
    root = case_factory("unused")
    for case_id in ("r1-string-slugify", "Bad_Id", "../up"):
        proc = _cli(root, "new", case_id)
        assert proc.returncode == 64, (case_id, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (cases_root(root) / "Bad_Id").exists()
    assert sorted(p.name for p in cases_root(root).iterdir() if p.name.startswith(".")) == []


def test_the_shipped_cases_are_sound(tmp_path: Path) -> None:
    root = REPO_ROOT / "harness"
    for case_id in ("r1-string-slugify", "r2-inventory-report", "r3-config-merge"):
        results = _results(root, case_id, keep_bundles=tmp_path / case_id)
        assert _failed(results) == set(), (case_id, results)
    # The kept bundles are ordinary bundles: one fail (no solution), one pass.
    verdicts = sorted(json.loads((p / "report.json").read_text())["verdict"]
                      for p in (tmp_path / "r1-string-slugify").iterdir())
    assert verdicts == ["fail", "pass"]


def test_tests_that_pass_unsolved_fail_the_check_unless_the_case_says_why(
        case_factory: CaseFactory) -> None:
    solved = (REPO_ROOT / "harness/evals/cases/r1-string-slugify/fake/solution/slugkit/text.py"
              ).read_text()
    root = case_factory("already-solved", files={"repo/slugkit/text.py": solved})
    results = _results(root, "already-solved")
    # The solution changes nothing now, so the run cannot pass either (expected changes).
    assert _failed(results) == {"pristine_tests_fail", "fake_solution_passes",
                                "allowed_paths_cover_solution"}
    assert "already pass on repo/" in results["pristine_tests_fail"][1]
    assert "expected_changes_present" in results["fake_solution_passes"][1]
    assert "changes nothing" in results["allowed_paths_cover_solution"][1]

    root = case_factory("refactor", files={"repo/slugkit/text.py": solved},
                        toml_edit=lambda t: t + '\n[authoring]\npristine_tests_pass_because = '
                                                '"a refactoring the tests guard"\n')
    results = _results(root, "refactor")
    assert results["pristine_tests_fail"][0] is True
    assert "a refactoring the tests guard" in results["pristine_tests_fail"][1]


def test_a_solution_outside_the_allowed_paths_fails_its_check(case_factory: CaseFactory) -> None:
    root = case_factory("spills-over", files={"fake/solution/slugkit/extra.py": "X = 1\n"})
    results = _results(root, "spills-over")
    assert _failed(results) == {"fake_solution_passes", "allowed_paths_cover_solution"}
    assert "slugkit/extra.py" in results["allowed_paths_cover_solution"][1]
    assert "allowed_writes_passed" in results["fake_solution_passes"][1]


def test_a_wrong_solution_fails_fake_solution_passes(case_factory: CaseFactory) -> None:
    root = case_factory("wrong", files={"fake/solution/slugkit/text.py":
                                        "def slugify(value):\n    return value\n"})
    results = _results(root, "wrong")
    assert _failed(results) == {"fake_solution_passes"}
    assert "harness_verification_passed" in results["fake_solution_passes"][1]


def test_static_checks_name_missing_tests_overlapping_paths_and_no_solution(
        case_factory: CaseFactory) -> None:
    def edit(text: str) -> str:
        text = text.replace('files = ["tests/**"]', 'files = ["tests/**", "spec/*.py"]')
        return text.replace('allowed_paths = ["slugkit/text.py"]',
                            'allowed_paths = ["slugkit/text.py", "tests/test_text.py"]')

    root = case_factory("sloppy", toml_edit=edit)
    folder = cases_root(root) / "sloppy"
    for path in (folder / "fake" / "solution").rglob("*"):
        if path.is_file():
            path.unlink()
    results = _results(root, "sloppy")
    assert {"verification_files_exist", "allowed_paths_exclude_tests",
            "fake_solution_present"} <= _failed(results)
    assert "spec/*.py" in results["verification_files_exist"][1]
    assert "tests/test_text.py" in results["allowed_paths_exclude_tests"][1]


def test_an_invalid_case_stops_at_case_valid(case_factory: CaseFactory) -> None:
    root = case_factory("broken", toml_edit=lambda t: t.replace('title = "Implement slugify"',
                                                               "title = 7"))
    proc = _cli(root, "check", "broken", "--json")
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["case_valid"]["passed"] is False and "title" in checks["case_valid"]["detail"]
    assert checks["pristine_tests_fail"]["detail"] == "not checked: case.toml is invalid"
    unknown = _cli(root, "check", "no-such-case")
    assert unknown.returncode == 64


def test_case_toml_round_trips_through_the_model() -> None:
    spec = load_case(REPO_ROOT / "harness/evals/cases/r1-string-slugify").spec
    tricky = spec.model_copy(update={"title": 'quote " backslash \\ del \x7f emoji \U0001f600'})
    again = CaseSpec.model_validate(tomllib.loads(case_toml(tricky)))
    assert again == tricky


def test_scaffold_refuses_a_missing_cases_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        scaffold_case(tmp_path, "x")


def test_a_case_toml_that_is_not_utf8_fails_case_valid_without_a_traceback(
        case_factory: CaseFactory) -> None:
    root = case_factory("latin1")
    toml = cases_root(root) / "latin1" / "case.toml"
    toml.write_bytes(toml.read_bytes() + b"# caf\xe9\n")
    proc = _cli(root, "check", "latin1", "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["case_valid"]["passed"] is False
    assert "utf-8" in checks["case_valid"]["detail"]


@pytest.mark.parametrize("where", ["repo/slugkit", "fake/solution/slugkit"])
def test_a_fifo_in_the_case_fails_case_valid_without_a_traceback(
        case_factory: CaseFactory, where: str) -> None:
    """shutil's copy of repo/ (and of the overlay) refused the FIFO mid-copy: `case check`
    ended with a traceback and exit 3."""
    root = case_factory("piped")
    os.mkfifo(cases_root(root) / "piped" / where / "pipe")
    proc = _cli(root, "check", "piped", "--json")
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["case_valid"]["passed"] is False
    assert f"{where}/pipe" in checks["case_valid"]["detail"]
