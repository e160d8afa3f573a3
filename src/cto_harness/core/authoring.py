"""Fixture authoring: `case new` scaffolds a case, `case check` proves one sound.

A sound case is one whose verdicts mean something: its tests fail on the original repository
(or the case says why they may not), pass with the fake engine's solution, the allowed paths
cover that solution, and the verification files exist. The proof uses the real pipeline: the
solution is judged by an ordinary fake-engine run (`execute_run`), and the pristine repository by
the same run on a copy of the case whose fake solution is empty, so the harness's own test run,
isolation and all, decides both.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cto_harness.checks import Check
from cto_harness.contracts import CASE_ID_PATTERN, CaseSpec, Report
from cto_harness.core.fixtures import FixtureCase, case_directory, cases_root, load_case
from cto_harness.core.globs import matches_any
from cto_harness.errors import Blocked, HarnessError, UsageError
from cto_harness.fsutil import atomic_write_text
from cto_harness.settings import Settings

Progress = Callable[[str], None]

# --- case new ---------------------------------------------------------------------------------

_CASE_TOML = '''\
# A fixture case for cto-harness (its fields: schemas/case.schema.json).
# Replace every TODO, then prove the case sound:  cto-harness case check {case_id}
# (its tests must fail on repo/ as it is and pass with the fake solution in fake/solution/).

id = "{case_id}"  # must equal the folder name
# TODO: one line saying what the task is.
title = {title}
# Labels for people and tools (`cto-harness cases --json`); never given to the provider.
tags = ["python", "unittest"]
# TODO: the task as the provider reads it: what to change, where, and what not to touch.
# No absolute paths: the provider sees only its own copy of repo/.
task = """
The package `example` has a stub `add(a, b)` in `example/core.py`. Implement it: return the sum
of the two integers. Change only `example/core.py`. Do not change the tests.
"""
# Globs (relative to repo/) the provider may change; a change anywhere else fails the run.
allowed_paths = ["example/core.py"]
# Told to the provider; the harness itself enforces writes, gh calls and pushes.
forbidden_actions = [
  "git push to any remote other than the local one",
  "gh pr create (or any other gh call)",
  "changing files outside the allowed paths",
  "changing the tests",
]

[verification]
# Run by the harness, in a copy of the result with these files laid back exactly as they are in
# repo/, so a provider cannot pass by editing the tests. framework: unittest or pytest.
command = ["python3", "-I", "-m", "unittest", "discover", "-s", "tests", "-t", ".", "-v"]
framework = "unittest"
files = ["tests/**"]
timeout_seconds = 120

[evidence]
# Globs a correct solution must change, and the fewest tests that must run.
changed_paths = ["example/core.py"]
min_tests = 3

[fake]
# The fake engine's deterministic solution: files copied over the workspace, same paths as in
# repo/. TODO: put your reference solution there.
overlay = "fake/solution"

# Only if the tests already pass on repo/ as it is (say, a refactoring the tests guard):
# [authoring]
# pristine_tests_pass_because = "why a provider that changes nothing is still judged fairly"
'''

_SCAFFOLD_FILES = {
    "repo/README.md": "# example\n\nTODO: the fixture repository, as the provider first sees "
                      "it.\n",
    "repo/example/__init__.py": "from example.core import add\n\n__all__ = [\"add\"]\n",
    "repo/example/core.py": 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n'
                            '    raise NotImplementedError("add is not implemented yet")\n',
    "repo/tests/__init__.py": "",
    "repo/tests/test_core.py": (
        "import unittest\n\nfrom example import add\n\n\n"
        "class AddTest(unittest.TestCase):\n"
        "    def test_small_numbers(self):\n        self.assertEqual(add(2, 3), 5)\n\n"
        "    def test_negative_numbers(self):\n        self.assertEqual(add(-2, -3), -5)\n\n"
        "    def test_zero_is_neutral(self):\n        self.assertEqual(add(7, 0), 7)\n\n\n"
        'if __name__ == "__main__":\n    unittest.main()\n'
    ),
    "fake/solution/example/core.py": 'def add(a: int, b: int) -> int:\n'
                                     '    """Return a + b."""\n    return a + b\n',
}


def scaffold_case(harness_root: Path, case_id: str, title: str | None = None) -> Path:
    """Write a new case folder that `case check` passes except for its TODO markers."""
    if not CASE_ID_PATTERN.fullmatch(case_id):
        raise UsageError(f"invalid case id {case_id!r}: case ids match [a-z0-9][a-z0-9-]*")
    root = cases_root(harness_root)
    if not root.is_dir():
        raise UsageError(f"no cases folder at {root}")
    folder = root / case_id
    if folder.exists() or folder.is_symlink():
        raise UsageError(f"case {case_id} already exists: {folder}")
    staging = Path(tempfile.mkdtemp(prefix=f".{case_id}.", dir=root))
    try:
        text = _CASE_TOML.format(case_id=case_id,
                                 title=_toml_string(title or "TODO: say what the task is"))
        atomic_write_text(staging / "case.toml", text)
        for rel, content in _SCAFFOLD_FILES.items():
            atomic_write_text(staging / rel, content)
        staging.chmod(0o755)
        staging.rename(folder)  # appears whole, or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


# --- case check -------------------------------------------------------------------------------

CHECK_NAMES = (
    "case_valid",
    "verification_files_exist",
    "allowed_paths_exclude_tests",
    "fake_solution_present",
    "pristine_tests_fail",
    "fake_solution_passes",
    "allowed_paths_cover_solution",
    "no_todo_markers",
)


@dataclass(frozen=True)
class CaseCheck:
    case_id: str
    checks: list[Check]
    bundles: dict[str, str] = field(default_factory=dict)  # kept bundles, when asked

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "case_id": self.case_id, "bundles": self.bundles,
                "checks": [c.to_json() for c in self.checks]}


def _repo_files(repo: Path) -> list[str]:
    return sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*")
                  if p.is_file() or p.is_symlink())


def _static_checks(case: FixtureCase) -> list[Check]:
    spec = case.spec
    files = _repo_files(case.repo)
    empty = [g for g in spec.verification.files if not any(matches_any(f, [g]) for f in files)]
    tests = [f for f in files if matches_any(f, spec.verification.files)]
    overlap = [f for f in tests if matches_any(f, spec.allowed_paths)]
    overlay = case.overlay_dir()
    solution = [p for p in overlay.rglob("*") if p.is_file()] if overlay.is_dir() else []
    script = case.directory / spec.fake.script if spec.fake.script else None
    present = bool(solution) or bool(spec.fake.delete) or bool(script and script.is_file())
    return [
        Check("verification_files_exist", not empty,
              f"every verification glob matches files in repo/ ({len(tests)} files)" if not empty
              else f"no file in repo/ matches: {', '.join(empty)}"),
        Check("allowed_paths_exclude_tests", not overlap,
              "no verification file is inside the allowed paths" if not overlap else
              "the allowed paths include verification files (their changes are discarded "
              f"before the tests run): {', '.join(overlap[:5])}"),
        Check("fake_solution_present", present,
              f"{len(solution)} files in {spec.fake.overlay}/"
              + (f", script {spec.fake.script}" if script else "")
              + (f", {len(spec.fake.delete)} deletions" if spec.fake.delete else "")
              if present else f"no fake solution: {spec.fake.overlay}/ holds no file"),
    ]


def _todo_check(case_dir: Path) -> Check:
    # Also run on a case.toml that did not load: bytes that are not UTF-8 must not stop it.
    text = (case_dir / "case.toml").read_bytes().decode("utf-8", errors="replace")
    lines = [n for n, line in enumerate(text.splitlines(), 1) if "TODO" in line]
    return Check("no_todo_markers", not lines,
                 "case.toml has no TODO left" if not lines else
                 f"case.toml still has TODO markers on lines {', '.join(map(str, lines))}")


def _toml_string(text: str) -> str:
    # A JSON string is a TOML basic string once DEL, which JSON leaves raw, is escaped too;
    # raw UTF-8 (not \u surrogate pairs, which TOML refuses) for everything else.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise HarnessError(f"cannot write {type(value).__name__} into case.toml")


def case_toml(spec: CaseSpec) -> str:
    """A case.toml for `spec` (top-level keys, then one table per section)."""
    data = spec.model_dump(mode="json", exclude_none=True)
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{key}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


@contextmanager
def _pristine_copy(case: FixtureCase, scratch: Path) -> Iterator[Path]:
    """A harness root holding a copy of the case whose fake solution changes nothing."""
    root = scratch / "pristine-harness"
    folder = cases_root(root) / case.spec.id
    shutil.copytree(case.repo, folder / "repo", symlinks=True)
    empty = case.spec.model_copy(update={"fake": case.spec.fake.model_copy(
        update={"overlay": "fake/empty", "delete": [], "script": None, "commit": False})})
    atomic_write_text(folder / "case.toml", case_toml(empty))
    yield root


def _verification_line(report: Report) -> str:
    v = report.verification
    return f"{v.tests_ran} ran, {v.tests_passed} passed, {v.tests_failed} failed"


def _pristine_check(report: Report, case: FixtureCase) -> Check:
    because = case.spec.authoring.pristine_tests_pass_because
    v = report.verification
    if v.status == "not_run":
        blockers = "; ".join(f"{b.code}: {b.message}" for b in report.blockers) or "not reached"
        return Check("pristine_tests_fail", False, f"the tests did not run: {blockers}")
    if v.status == "passed":
        if because:
            return Check("pristine_tests_fail", True,
                         f"the tests pass on repo/ as it is ({_verification_line(report)}); the "
                         f"case says why: {because}")
        return Check("pristine_tests_fail", False,
                     f"the tests already pass on repo/ as it is ({_verification_line(report)}): "
                     "they cannot tell a solution from no change (or say why in [authoring] "
                     "pristine_tests_pass_because)")
    if v.tests_failed == 0 and not because:
        return Check("pristine_tests_fail", False,
                     f"the pristine run failed without a failing test ({v.reason}): check the "
                     "verification command")
    return Check("pristine_tests_fail", True,
                 f"on repo/ as it is: {_verification_line(report)} ({v.reason})")


def _solution_checks(report: Report) -> list[Check]:
    problems = [f"{b.code}: {b.message}" for b in report.blockers]
    problems += [name for name, ok in report.pass_conditions.items() if not ok]
    if report.verification.reason:
        problems.append(f"verification: {report.verification.reason}")
    passes = Check("fake_solution_passes", report.verdict == "pass",
                   f"verdict pass; {_verification_line(report)}" if report.verdict == "pass"
                   else f"verdict {report.verdict}: {'; '.join(problems) or 'see the bundle'}")
    changed = report.changed_files
    outside = [c.path for c in changed if not c.allowed]
    if report.verdict in ("blocked", "error") and not changed:
        cover = Check("allowed_paths_cover_solution", False,
                      "not checked: the solution run did not get that far")
    elif not changed:
        cover = Check("allowed_paths_cover_solution", False, "the fake solution changes nothing")
    else:
        cover = Check("allowed_paths_cover_solution", not outside,
                      f"all {len(changed)} changed files are allowed: "
                      f"{', '.join(c.path for c in changed[:5])}" if not outside else
                      f"the solution changes files outside the allowed paths: "
                      f"{', '.join(outside[:5])}")
    return [passes, cover]


def check_case(harness_root: Path, case_id: str, *, settings: Settings | None = None,
               keep_bundles: Path | None = None, progress: Progress | None = None) -> CaseCheck:
    """Every named check of CHECK_NAMES, in order. Runs two real fake-engine runs."""
    from cto_harness.core.run import execute_run

    say = progress or (lambda _text: None)
    case_dir = case_directory(harness_root, case_id)  # usage error for a bad or unknown id
    try:
        case = load_case(case_dir)
    except Blocked as exc:
        skipped = [Check(n, False, "not checked: case.toml is invalid") for n in CHECK_NAMES[1:-1]]
        return CaseCheck(case_id, [Check("case_valid", False, exc.message), *skipped,
                                   _todo_check(case_dir)])
    checks = [Check("case_valid", True, "case.toml matches the schema; repo/ is there"),
              *_static_checks(case)]
    settings = settings or Settings.from_env()
    scratch = Path(tempfile.mkdtemp(prefix="cto-harness-case-check-"))
    bundles: dict[str, str] = {}
    try:
        runs_dir = keep_bundles.absolute() if keep_bundles else scratch / "runs"
        run_settings = settings.model_copy(update={"runs_dir": runs_dir})
        say(f"case check {case_id}: the tests on repo/ as it is (a run with no solution)…")
        with _pristine_copy(case, scratch) as pristine_root:
            pristine = execute_run(case_id, "fake", harness_root=pristine_root,
                                   settings=run_settings)
        checks.append(_pristine_check(pristine.report, case))
        say(f"case check {case_id}: the fake solution (an ordinary fake-engine run)…")
        solution = execute_run(case_id, "fake", harness_root=harness_root, settings=run_settings)
        checks += _solution_checks(solution.report)
        if keep_bundles:
            bundles = {"pristine": str(pristine.run_dir), "solution": str(solution.run_dir)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    checks.append(_todo_check(case_dir))
    return CaseCheck(case_id, checks, bundles)
