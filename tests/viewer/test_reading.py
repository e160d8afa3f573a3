"""How bundle text is read: made inert, per-test results (structured first, the log as a
reading aid), the one-line reason and the provider's outcome, on reports of either shape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import CaseFactory
from cto_harness.core.run import execute_run
from cto_harness.evidence.summary import one_line_reason, provider_outcome
from cto_harness.inert import inert, inert_tree
from cto_harness.viewer.compare import compare_runs
from cto_harness.viewer.runview import load_run, safe_path
from cto_harness.viewer.testresults import FROM_LOG, STRUCTURED, collect

UNITTEST_LOG = """\
test_a (tests.test_x.XTest.test_a) ... ok
test_b (tests.test_x.XTest.test_b)
A docstring line ... FAIL
test_c (tests.test_x.XTest.test_c) ... ERROR
test_d (tests.test_x.XTest.test_d) ... skipped 'later'

======================================================================
FAIL: test_b (tests.test_x.XTest.test_b)
A docstring line
----------------------------------------------------------------------
Traceback (most recent call last):
AssertionError: 1 != 2

======================================================================
ERROR: test_c (tests.test_x.XTest.test_c)
----------------------------------------------------------------------
Traceback (most recent call last):
ValueError: boom

----------------------------------------------------------------------
Ran 4 tests in 0.001s

FAILED (failures=1, errors=1, skipped=1)
"""

PYTEST_LOG = """\
tests/test_y.py::test_one PASSED                                         [ 50%]
tests/test_y.py::test_two FAILED                                         [100%]
"""


def test_a_hostile_log_line_is_read_in_linear_time() -> None:
    # One 1 MiB line of colons: the old pattern (`\S+::\S+`) backtracked quadratically on it
    # (about 4 s for 32 KiB, hours for this). Read in a process of its own with a bound far
    # above the milliseconds it takes, so a regression fails instead of hanging the suite.
    code = ("import sys\n"
            "from cto_harness.viewer.testresults import collect\n"
            "log = ':' * (1 << 20) + '\\n' + sys.argv[1]\n"
            "print(len(collect({}, log).tests))\n")
    done = subprocess.run([sys.executable, "-c", code, PYTEST_LOG], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"


def test_inert_shows_controls_and_invisible_formatting() -> None:
    assert inert("a\x1b[2Jb") == "a\u241b[2Jb"
    assert inert("cr\rnul\x00del\x7f") == "cr\u240dnul\u2400del\u2421"
    assert inert("x\u202ey\u200bz\ufeff") == "x\u27e8U+202E\u27e9y\u27e8U+200B\u27e9z\u27e8U+FEFF\u27e9"
    assert inert("two\nlines\tand tab") == "two\u2424lines\u2409and tab"
    assert inert("two\nlines\tkept", multiline=True) == "two\nlines\tkept"
    assert inert("\x9b31m") == "\u27e8U+009B\u27e931m"  # the one-byte CSI
    assert inert_tree({"k\x1b": ["v\n", 3, None]}) == {"k\u241b": ["v\u2424", 3, None]}
    assert inert("<b>**plain**</b> é ✓") == "<b>**plain**</b> é ✓"  # HTML is the page's job


def test_per_test_results_from_a_unittest_log() -> None:
    results = collect({}, UNITTEST_LOG)
    assert results.source == FROM_LOG and not results.structured
    assert [(t.name, t.outcome) for t in results.tests] == [
        ("tests.test_x.XTest.test_a", "passed"), ("tests.test_x.XTest.test_b", "failed"),
        ("tests.test_x.XTest.test_c", "error"), ("tests.test_x.XTest.test_d", "skipped")]
    assert "AssertionError: 1 != 2" in results.tests[1].detail
    assert "ValueError: boom" in results.tests[2].detail
    assert [t.name for t in results.failed] == ["tests.test_x.XTest.test_b",
                                                "tests.test_x.XTest.test_c"]


def test_per_test_results_from_a_pytest_log_and_from_structured_results() -> None:
    assert [(t.name, t.outcome) for t in collect({}, PYTEST_LOG).tests] == [
        ("tests/test_y.py::test_one", "passed"), ("tests/test_y.py::test_two", "failed")]
    structured = collect({"tests": [{"id": "t.one", "outcome": "passed"},
                                    {"name": "t.two", "status": "failed", "message": "why"},
                                    "junk"]}, UNITTEST_LOG)
    assert structured.source == STRUCTURED and structured.structured
    assert [(t.name, t.outcome, t.detail) for t in structured.tests] == [
        ("t.one", "passed", ""), ("t.two", "failed", "why")]
    assert collect({}, "no test lines at all").tests == []


def _report(**fields: object) -> dict[str, object]:
    return {"verdict": "fail", "pass_conditions": {}, "verification": {}, **fields}


def test_one_line_reason_per_verdict() -> None:
    assert one_line_reason(_report(
        verdict="blocked", blockers=[{"code": "provider_timeout", "message": "ran past 900s"},
                                     {"code": "x", "message": "y"}])) == \
        "provider_timeout: ran past 900s (+1 more)"
    assert one_line_reason(_report(
        pass_conditions={"allowed_writes_passed": False, "harness_verification_passed": False},
        changed_files=[{"path": "a.py", "allowed": False}, {"path": "b.py", "allowed": True}],
        verification={"reason": "2 tests failed"})) == \
        "changes outside the allowed paths: a.py (+1 more conditions)"
    assert one_line_reason(_report(
        pass_conditions={"harness_verification_passed": False},
        verification={"reason": "exit code 1; 2 tests failed"})) == \
        "the harness's own tests failed: exit code 1; 2 tests failed"
    assert one_line_reason(_report(
        verdict="pass", pass_conditions={"a": True, "b": True},
        verification={"tests_ran": 5})) == \
        "all 2 pass conditions held; the harness ran 5 tests itself, all passed"
    assert one_line_reason({"verdict": "bogus"}).startswith("the report names no verdict")


def test_provider_outcome_prefers_the_report_field_and_names_disagreement() -> None:
    report = _report(
        verdict="pass",
        provider_outcome={"outcome": "failed", "failed_agent": "closer",
                          "phases": [{"phase": "close", "agent": "closer", "outcome": "failed"}]},
        provider_claims={"pipeline_end": {"outcome": "completed"}})
    outcome = provider_outcome(report)
    assert outcome is not None
    assert (outcome.outcome, outcome.failed_agent) == ("failed", "closer")
    assert outcome.phases == [("close", "closer", "failed")]
    assert outcome.source == "report.json provider_outcome"
    assert outcome.disagreement == "the harness says PASS but the provider's own pipeline says " \
                                   "failed"
    older = provider_outcome(_report(provider_claims={
        "pipeline_end": {"outcome": "completed"},
        "phase_results": [{"phase": "implement", "agent": "implementer", "outcome": "completed"}]}))
    assert older is not None and older.outcome == "completed"
    assert older.disagreement == "the provider says completed but the harness's own checks failed"
    assert provider_outcome(_report()) is None
    # A word outside the closed set is named as such, never taken as agreeing with a FAIL.
    masked = provider_outcome(_report(verdict="fail",
                                      provider_outcome={"outcome": "completed\u034f"}))
    assert masked is not None and masked.disagreement is not None
    assert "does not recognise" in masked.disagreement


def test_a_name_past_name_max_is_no_safe_path_and_no_crash(tmp_path: Path) -> None:
    # suite.json and a tampered manifest are unsigned: a 300-byte name made lstat raise
    # ENAMETOOLONG, and the viewer stopped with a harness error instead of a page.
    assert safe_path(tmp_path, "x" * 300) is None
    assert safe_path(tmp_path, "runs/" + "y" * 300 + "/report.json") is None
    assert safe_path(tmp_path, "runs/r001") == tmp_path / "runs" / "r001"  # need not exist


def test_two_runs_that_changed_a_quoted_name_differently_are_not_called_the_same(
        case_factory: CaseFactory, harness_home: Path) -> None:
    # git quotes a name that is not plain ASCII in patch.diff's headers, so neither run's patch
    # was found under the report's name, and two missing patches compared equal: "same".
    allow = ('allowed_paths = ["slugkit/text.py"]', 'allowed_paths = ["**"]')
    root = case_factory("accent-a", toml_edit=lambda t: t.replace(*allow),
                        files={"fake/solution/slugkit/\u00e9.py": "A = 1\n"})
    case_factory("accent-b", toml_edit=lambda t: t.replace(*allow),
                 files={"fake/solution/slugkit/\u00e9.py": "B = 2\n"})
    a = load_run(execute_run("accent-a", harness_root=root).run_dir)
    b = load_run(execute_run("accent-b", harness_root=root).run_dir)
    (accented,) = [f for f in compare_runs(a, b).files if f.path == "slugkit/\u00e9.py"]
    assert accented.in_a and accented.in_b
    assert accented.same_patch is not True


def test_a_long_test_log_shows_its_end_not_only_its_start(
        case_factory: CaseFactory, harness_home: Path) -> None:
    # The tested code writes to the same log before the harness's own lines: a program that
    # printed a forged passing run and then 300 KiB of blank lines pushed the real results
    # (and the harness's summary) past the part of the log the page showed.
    noisy = ("import sys\nsys.stdout.write('Ran 5 tests\\\\nOK\\\\n' + '\\\\n' * 400_000)\n"
             "def slugify(value):\n    return value\n")
    root = case_factory("noisy", files={"fake/solution/slugkit/text.py": noisy})
    result = execute_run("noisy", harness_root=root)
    last = (result.run_dir / "test.log").read_text().rstrip("\n").rsplit("\n", 1)[-1]
    view = load_run(result.run_dir)
    assert view.test_log_cut and "bytes not shown" in view.test_log
    assert view.test_log.rstrip("\n").endswith(inert(last))
