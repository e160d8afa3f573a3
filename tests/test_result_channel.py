"""Test results the code under test cannot write: real runs of the fake lane whose solution
(an allowed file) forges, skips, tampers or cuts the run short. Each ends `fail` with the named
condition, never `pass`; the text of test.log is only a cross-check."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import pytest

from conftest import CaseFactory
from cto_harness.contracts import VerificationResult
from cto_harness.core.run import execute_run
from cto_harness.core.testchannel import (
    Channel,
    Expected,
    Records,
    UnsupportedCommand,
    instrument,
    judge_run,
    parse_records,
)
from cto_harness.core.testrun import parse_counts

SOLUTION = '''import re


def slugify(value: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", value.lower()))
'''


def _solved_with(case_factory: CaseFactory, case_id: str, text_py: str, **kw: object) -> Path:
    """A case whose fake solution writes `text_py` as slugkit/text.py (the allowed file)."""
    return case_factory(case_id, files={"fake/solution/slugkit/text.py": text_py}, **kw)


def _failed_verification(case_factory: CaseFactory, case_id: str, text_py: str
                         ) -> VerificationResult:
    """The verification of a fake run whose solution is `text_py`, which must have failed."""
    root = _solved_with(case_factory, case_id, text_py)
    verification = execute_run(case_id, harness_root=root).report.verification
    assert verification.status == "failed", verification.reason
    return verification


def test_a_printed_summary_and_an_early_exit_fail(case_factory: CaseFactory) -> None:
    forged = SOLUTION + (
        "import os, sys\n"
        "sys.stderr.write('test_x (tests.test_text.SlugifyTest) ... ok\\n' * 5)\n"
        "sys.stderr.write('\\n' + '-' * 70 + '\\nRan 5 tests in 0.001s\\n\\nOK\\n')\n"
        "sys.stderr.flush()\n"
        "os._exit(0)\n")
    root = _solved_with(case_factory, "forged-summary", forged)
    report = execute_run("forged-summary", harness_root=root).report
    v = report.verification
    assert report.verdict == "fail"
    assert {"runner_did_not_finish", "expected_tests_missing", "no_tests_ran",
            "exit_status_inconsistent"} <= set(v.failures)
    assert v.exit_code == 0 and not v.runner_finished
    # The forged text is still parsed for people, and would have been a pass on its own.
    assert v.log_counts == {"ran": 5, "passed": 5, "failed": 0}


def test_fewer_tests_than_the_pristine_files_define_fail(case_factory: CaseFactory) -> None:
    fewer = SOLUTION + (
        "import unittest\n"
        "_names = unittest.TestLoader.getTestCaseNames\n"
        "unittest.TestLoader.getTestCaseNames = lambda self, cls: _names(self, cls)[:1]\n")
    v = _failed_verification(case_factory, "fewer-tests", fewer)
    assert "expected_tests_missing" in v.failures
    assert v.tests_expected == 5 and v.tests_ran == 1
    assert len(v.missing_tests) == 4
    assert sorted(t["outcome"] for t in v.tests) == ["not_reported"] * 4 + ["passed"]
    assert "TestLoader.getTestCaseNames" in v.framework_tampered


def test_tests_skipped_by_the_code_under_test_fail(case_factory: CaseFactory) -> None:
    skipping = "import unittest\n\n\ndef slugify(value):\n    raise unittest.SkipTest('no')\n"
    v = _failed_verification(case_factory, "skip-all", skipping)
    assert "tests_skipped" in v.failures
    assert v.tests_skipped == 5 and v.tests_passed == 0


def test_records_forged_on_the_channel_fail(case_factory: CaseFactory) -> None:
    """The tested code finds every pipe it holds and writes a complete fake run into each, then
    exits: without the per-run token none of it counts."""
    forger = SOLUTION + '''
import json, os
for fd in os.listdir("/proc/self/fd"):
    try:
        if not os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
            continue
        rows = [{"token": "guess", "type": "start"}]
        rows += [{"token": "guess", "type": "test", "id": f"t{i}", "outcome": "passed"}
                 for i in range(5)]
        rows += [{"token": "guess", "type": "end", "ran": 5, "successful": True, "tampered": []}]
        os.write(int(fd), "".join(json.dumps(r) + "\\n" for r in rows).encode())
    except OSError:
        pass
os._exit(0)
'''
    v = _failed_verification(case_factory, "forged-records", forger)
    assert {"channel_record_invalid", "runner_did_not_finish"} <= set(v.failures)


def test_a_framework_patched_to_pass_everything_is_named(case_factory: CaseFactory) -> None:
    wrong = "import unittest\n\n\ndef slugify(value):\n    return 'wrong'\n\n\n" + (
        "def _run(self, result=None):\n"
        "    result.startTest(self)\n"
        "    result.addSuccess(self)\n"
        "    result.stopTest(self)\n\n\n"
        "unittest.TestCase.run = _run\n")
    v = _failed_verification(case_factory, "patched-run", wrong)
    assert v.failures == ["framework_tampered"]
    assert "TestCase.run" in v.framework_tampered


def test_verification_files_changed_by_the_tests_fail(case_factory: CaseFactory) -> None:
    rewriter = SOLUTION + (
        "import pathlib\n"
        "pathlib.Path('tests/__init__.py').write_text('# rewritten during the run\\n')\n")
    v = _failed_verification(case_factory, "rewrite-tests", rewriter)
    assert v.failures == ["verification_files_changed"]


def test_a_fixture_without_tests_is_blocked(case_factory: CaseFactory) -> None:
    root = case_factory("no-tests", toml_edit=lambda t: t.replace(
        '"discover", "-s", "tests"', '"discover", "-s", "slugkit"').replace(
        "min_tests = 4", "min_tests = 1"))
    report = execute_run("no-tests", harness_root=root).report
    assert report.verdict == "blocked"
    assert [b.code for b in report.blockers] == ["test_collection_failed"]
    assert "no tests collected" in report.blockers[0].message


def test_a_command_the_driver_cannot_run_is_an_invalid_contract(case_factory: CaseFactory) -> None:
    root = case_factory("shell-cmd", toml_edit=lambda t: t.replace(
        'command = ["python3", "-I", "-m", "unittest"', 'command = ["sh", "-c", "true", "x"'))
    report = execute_run("shell-cmd", harness_root=root).report
    assert report.verdict == "blocked"
    assert [b.code for b in report.blockers] == ["task_contract_invalid"]
    assert report.case_process_started is False  # refused before the provider ran


def _via_pytest(text: str) -> str:
    """case.toml of r1, verified with pytest instead of unittest."""
    return (text.replace('command = ["python3", "-I", "-m", "unittest", "discover", '
                         '"-s", "tests", "-t", ".", "-v"]',
                         'command = ["python", "-m", "pytest", "-q", "tests"]')
            .replace('framework = "unittest"', 'framework = "pytest"'))


def test_the_pytest_plugin_reports_every_test(case_factory: CaseFactory,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The project's own interpreter (it has pytest) first on the PATH verification gets.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    edit = _via_pytest
    root = case_factory("via-pytest", toml_edit=edit)
    report = execute_run("via-pytest", harness_root=root).report
    assert report.verdict == "pass", report.verification.reason
    assert report.verification.tests_expected == 5 == report.verification.tests_passed
    broken = _solved_with(case_factory, "via-pytest-broken",
                          "def slugify(value):\n    return value\n", toml_edit=edit)
    v = execute_run("via-pytest-broken", harness_root=broken).report.verification
    assert v.status == "failed" and v.failures == ["tests_failed"] and v.tests_failed == 5
    assert all(t["outcome"] == "failed" and "AssertionError" in t["detail"] for t in v.tests)


def test_failures_the_tested_code_calls_expected_fail(case_factory: CaseFactory,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """An expected failure passes: the tested code marks every test as one (unittest reads the
    mark from the test's class, so one attribute on TestCase does it; pytest has `xfail()`)
    and fails them all. Only the pristine file's own marks count."""
    marked = ("import unittest\nunittest.TestCase.__unittest_expecting_failure__ = True\n\n\n"
              "def slugify(value):\n    raise NotImplementedError\n")
    v = _failed_verification(case_factory, "forged-xfail", marked)
    assert "failure_not_expected" in v.failures and v.tests_failed == 5
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    root = _solved_with(case_factory, "forged-xfail-pytest",
                        "import pytest\n\n\ndef slugify(value):\n    pytest.xfail('later')\n",
                        toml_edit=_via_pytest)
    v = execute_run("forged-xfail-pytest", harness_root=root).report.verification
    assert "failure_not_expected" in v.failures and v.tests_failed == 5
    known = ("import unittest\n\n\nclass Known(unittest.TestCase):\n"
             "    @unittest.expectedFailure\n    def test_known_bug(self):\n"
             "        self.assertEqual(1, 2)\n")
    root = case_factory("pristine-xfail", files={"fake/solution/slugkit/text.py": SOLUTION,
                                                 "repo/tests/test_known.py": known})
    report = execute_run("pristine-xfail", harness_root=root).report
    assert report.verdict == "pass", report.verification.reason
    assert report.verification.tests_passed == 6


# --- the judgement itself, on records built by hand --------------------------------------------


def _records(token: str, rows: list[dict[str, object]]) -> Records:
    import json

    return parse_records("".join(json.dumps({"token": token, **r}) + "\n"
                                 for r in rows).encode(), token)


EXPECTED = Expected(ids=("a", "b", "c"), may_skip=frozenset({"c"}))


def test_a_complete_honest_run_passes_and_each_gap_is_named() -> None:
    rows: list[dict[str, object]] = [{"type": "start"}] + [
        {"type": "test", "id": i, "outcome": "passed"} for i in ("a", "b")] + [
        {"type": "test", "id": "c", "outcome": "skipped"}, {"type": "end", "ran": 3}]
    ok = judge_run(_records("t", rows), EXPECTED, exit_code=0, timed_out=False, min_tests=2)
    assert ok.failures == [] and (ok.ran, ok.passed, ok.skipped) == (3, 2, 1)
    cut = judge_run(_records("t", rows[:-1]), EXPECTED, exit_code=0, timed_out=False,
                    min_tests=2)
    assert cut.failures == ["runner_did_not_finish", "exit_status_inconsistent"]
    twice = [*rows[:1], {"type": "test", "id": "a", "outcome": "passed"}, *rows[1:]]
    dup = judge_run(_records("t", twice), EXPECTED, exit_code=0, timed_out=False, min_tests=2)
    assert dup.failures == ["unexpected_tests", "end_counts_inconsistent"]
    late = judge_run(_records("t", [*rows, {"type": "test", "id": "z", "outcome": "passed"}]),
                     EXPECTED, exit_code=0, timed_out=False, min_tests=2)
    assert late.failures == ["records_after_end"]
    wrong_exit = judge_run(_records("t", rows), EXPECTED, exit_code=1, timed_out=False,
                           min_tests=2)
    assert wrong_exit.failures == ["exit_status_inconsistent"]


def test_records_without_the_token_never_count() -> None:
    import json

    data = b"".join(json.dumps(r).encode() + b"\n" for r in (
        {"token": "real", "type": "start"}, {"token": "fake", "type": "test", "id": "a",
                                             "outcome": "passed"})) + b"not json\n"
    records = parse_records(data, "real")
    assert records.invalid == 2 and records.tests == [] and records.started


@pytest.mark.parametrize("command", [
    ["sh", "-c", "python -m unittest"], ["python3", "tests/run.py"], ["python3", "-m", "nose"],
    ["python3", "-c", "import unittest"], ["python3", "-i", "-m", "unittest"],
])
def test_commands_that_are_not_the_framework_module_are_refused(command: list[str]) -> None:
    with pytest.raises(UnsupportedCommand):
        instrument(command, "unittest", "run", 5, 6)


def test_the_driver_keeps_the_interpreter_options_and_runner_arguments() -> None:
    argv = instrument(["/usr/bin/python3.11", "-I", "-W", "error", "-Xdev", "-m", "unittest",
                       "-v"], "unittest", "run", 7, 8)
    assert argv[:5] == ["/usr/bin/python3.11", "-I", "-W", "error", "-Xdev"]
    assert argv[5] == "-c" and argv[7:] == ["run", "7", "8", "unittest", "-v"]


def test_the_text_cross_check_still_reads_the_runner_summary() -> None:
    assert parse_counts("unittest", "Ran 3 tests in 0.1s\n\nFAILED (failures=1)\n") == (3, 2, 1)


def test_a_printed_summary_that_is_no_number_never_stops_the_run(
        case_factory: CaseFactory) -> None:
    """The cross-check reads text the tested code can print: a count that is not a number, or
    one too long for `int`, is 0 there, never a harness error that spoils the verdict."""
    noisy = SOLUTION + (
        "import sys\n"
        "sys.stderr.write('Ran ' + '9' * 5000 + ' tests in 1s\\nFAILED (failures=x)\\n')\n")
    root = _solved_with(case_factory, "unreadable-summary", noisy)
    report = execute_run("unreadable-summary", harness_root=root).report
    assert report.verdict == "pass", (report.blockers, report.verification.reason)
    assert parse_counts("pytest", "9" * 5000 + " passed\n") == (0, 0, 0)
    assert parse_counts("unittest", "Ran 2 tests in 1s\n\nFAILED (errors=٣)\n") == (2, 2, 0)


def test_byte_code_in_the_tested_tree_never_runs(case_factory: CaseFactory) -> None:
    """An unchecked-hash .pyc (used without looking at the source) of a wrong slugify beside the
    right source: the harness's driver runs the source, the one the diff shows."""
    script = (
        "import os, py_compile, sys\n"
        "open('wrong.py', 'w').write('def slugify(value):\\n    return \"wrong\"\\n')\n"
        "target = f'slugkit/__pycache__/text.{sys.implementation.cache_tag}.pyc'\n"
        "py_compile.compile('wrong.py', cfile=target, dfile='slugkit/text.py',\n"
        "                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
        "os.unlink('wrong.py')\n")
    root = case_factory("stale-pyc", files={"attack.py": script}, toml_edit=lambda t: t.replace(
        'overlay = "fake/solution"', 'overlay = "fake/solution"\nscript = "attack.py"').replace(
        'allowed_paths = ["slugkit/text.py"]', 'allowed_paths = ["slugkit/**"]'))
    report = execute_run("stale-pyc", harness_root=root).report
    assert any(c.path.endswith(".pyc") for c in report.changed_files)
    assert report.verdict == "pass", report.verification.reason
    assert report.verification.tests_passed == 5


def test_malformed_records_are_failures_never_exceptions() -> None:
    rows: list[dict[str, object]] = [
        {"type": "start"}, {"type": "test", "id": ["a"], "outcome": {"x": 1}},
        {"type": "end", "ran": "many", "tampered": "everything"}]
    j = judge_run(_records("t", rows), EXPECTED, exit_code=0, timed_out=False, min_tests=1)
    assert {"framework_tampered", "expected_tests_missing", "unexpected_tests",
            "end_counts_inconsistent", "tests_failed"} <= set(j.failures)


def test_a_channel_dropped_before_it_is_finished_closes_and_its_thread_ends() -> None:
    # What an interrupt leaves when it lands while a run builds or uses its channel: the caller
    # never gets to finish() it. In a process that lives on (a Ray worker), its pipes and its
    # draining thread must still go, not wait forever on a write end nobody will close.
    before = sorted(os.listdir("/proc/self/fd"))
    channel = Channel()
    thread = channel._thread
    del channel
    gc.collect()
    thread.join(timeout=60)  # the event: the thread's end (EOF once the write end is closed)
    assert not thread.is_alive(), "the draining thread still waits on its pipe"
    assert sorted(os.listdir("/proc/self/fd")) == before


EQUAL_TO_ANYTHING = {
    # A str whose equality is str's inequality: a C method, so only its owner gives it away.
    "str_subclass": "class Slug(str):\n    __eq__ = str.__ne__\n    __hash__ = str.__hash__\n\n"
                    "def slugify(value):\n    return Slug('~')\n",
    "any_object": "class Anything:\n    def __eq__(self, other):\n        return True\n\n"
                  "def slugify(value):\n    return Anything()\n",
    # Claims to be the interpreter's own: the driver never asks the class where it is from.
    "claims_builtins": "class Slug(str):\n    __module__ = 'builtins'\n"
                       "    def __eq__(self, other):\n        return True\n"
                       "    __hash__ = str.__hash__\n\n"
                       "def slugify(value):\n    return Slug('~')\n",
    # Its metaclass says the class is `str` to hashing and `==`: a set of trusted types, asked
    # with `in`, would agree.
    "metaclass_equal_to_str": "class Like(type):\n    def __eq__(cls, other):\n        return True\n\n"
                              "    def __hash__(cls):\n        return hash(str)\n\n"
                              "class Slug(str, metaclass=Like):\n"
                              "    def __eq__(self, other):\n        return True\n\n"
                              "    def __ne__(self, other):\n        return False\n\n"
                              "    __hash__ = str.__hash__\n\n"
                              "def slugify(value):\n    return Slug('~')\n",
    # Fraction's equality is Python: its module's globals answer it, and they are the tested
    # code's to set (a Fraction compared with a str returned `NotImplemented`, now True).
    "fraction_module_patched": "import fractions\nfractions.NotImplemented = True\n\n\n"
                               "def slugify(value):\n    return fractions.Fraction(0)\n",
}


@pytest.mark.parametrize("shape", sorted(EQUAL_TO_ANYTHING))
def test_a_value_equal_to_anything_fails_the_test_that_compares_it(
    case_factory: CaseFactory, shape: str
) -> None:
    """The best-known way to pass tests without the work: return an object whose own `__eq__`
    says yes to whatever the test expects. Every test then passed."""
    case_id = f"equal-{shape.replace('_', '-')}"
    v = _failed_verification(case_factory, case_id, EQUAL_TO_ANYTHING[shape])
    assert v.tests_failed == 5 and v.tests_ran == 5
    assert all("cto-harness:" in t["detail"] and "not the interpreter's own" in t["detail"]
               for t in v.tests)


def test_the_fixtures_own_comparisons_still_pass(case_factory: CaseFactory) -> None:
    """Values of the interpreter's own types that compare across types (numbers, a namedtuple
    and a tuple, a str enum and a str, an OrderedDict and a dict) are left to their equality."""
    tests = (
        "import collections, decimal, enum, unittest\n"
        "from slugkit import slugify\n\n"
        "class Colour(str, enum.Enum):\n    RED = 'red'\n\n"
        "Point = collections.namedtuple('Point', 'x y')\n\n"
        "class MixedTest(unittest.TestCase):\n"
        "    def test_numbers(self):\n"
        "        self.assertEqual(decimal.Decimal('2'), 2)\n        self.assertEqual(1, 1.0)\n"
        "    def test_containers(self):\n"
        "        self.assertEqual(Point(1, 2), (1, 2))\n"
        "        self.assertEqual(collections.OrderedDict(a=[1]), {'a': [1.0]})\n"
        "    def test_enum_and_truth(self):\n"
        "        self.assertEqual(Colour.RED, 'red')\n        self.assertTrue([1])\n"
        "        self.assertIn(slugify('A b'), ['a-b', 'c'])\n"
        "    def test_slugify(self):\n        self.assertEqual(slugify('Hello, World!'), "
        "'hello-world')\n")
    root = case_factory("mixed-types", files={"fake/solution/slugkit/text.py": SOLUTION,
                                              "repo/tests/test_mixed.py": tests})
    report = execute_run("mixed-types", harness_root=root).report
    assert report.verdict == "pass", [t for t in report.verification.tests
                                      if t["outcome"] != "passed"]
    assert report.verification.tests_ran == 9


def test_the_judge_looks_inside_containers_and_objects_and_past_disguises() -> None:
    import dataclasses

    from cto_harness.core.testdriver import _Judge

    class Slug(str):
        __eq__ = str.__ne__  # type: ignore[assignment]
        __hash__ = str.__hash__

    class Lying(type):
        __mro__ = (str, object)  # type: ignore[assignment]

    class Disguised(str, metaclass=Lying):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    class Truthy:
        def __bool__(self) -> bool:
            return True

    @dataclasses.dataclass
    class Item:  # a fixture's own class: compared with its own kind, its fields are judged
        name: object

    judge = _Judge()
    for suspect in ([["a", Slug("~")]], {"k": (1, Slug("~"))}, Item(Slug("~"))):
        expected = ([["a", "b"]] if isinstance(suspect, list) else
                    {"k": (1, "b")} if isinstance(suspect, dict) else Item("b"))
        assert "Slug.__eq__" in (judge.compared(suspect, expected) or ""), suspect
    assert "Disguised.__eq__" in (judge.compared(Disguised("~"), "b") or "")
    assert judge.compared(Item("b"), Item("b")) is None
    assert judge.compared([1, {"a": 2.0}], (1, {"a": 2})) is None
    assert "Truthy.__bool__" in (judge.truth(Truthy()) or "")
    assert judge.truth([0]) is None and judge.truth(Item("x")) is None
    assert judge.member(Slug("~"), ["a", "b"]) and judge.member("a", ["a"]) is None


def _r3_fails_naming_anything(case_factory: CaseFactory, case_id: str, merge: str) -> None:
    """An r3 run whose confmerge/merge.py is `merge`: every comparing test fails, naming the
    tested code's `Anything.__eq__` (the fourth test checks the inputs, left unchanged)."""
    root = case_factory(case_id, base="r3-config-merge",
                        files={"fake/solution/confmerge/merge.py": merge})
    v = execute_run(case_id, harness_root=root).report.verification
    assert v.status == "failed" and v.tests_failed == 3, v.reason
    assert all("Anything.__eq__" in t["detail"] for t in v.tests if t["outcome"] == "failed")


def test_dict_keys_and_set_members_are_judged_too(case_factory: CaseFactory) -> None:
    """r3 compares dicts. Keys of a `str` subclass (the interpreter's equality, so rightly
    found) made the judge skip their values, which could then equal anything; a key whose own
    `__eq__` answers is found in any dict, and a set member likewise."""
    anything = "class Anything:\n    def __eq__(self, other):\n        return True\n\n\n"
    merge = anything + ("class Key(str):\n    pass\n\n\n"
                        "def deep_merge(base, override):\n"
                        "    return {Key(k): Anything() for k in {**base, **override}}\n")
    _r3_fails_naming_anything(case_factory, "str-keys", merge)

    from cto_harness.core.testdriver import _Judge

    class Any:
        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return hash("a")

    judge = _Judge()
    assert "Any.__eq__" in (judge.compared({Any(): 1}, {"a": 1}) or "")
    assert "Any.__eq__" in (judge.compared({"x": [{"a"}]}, {"x": [{Any()}]}) or "")
    assert "Any.__eq__" in (judge.compared(frozenset({Any()}), {"a"}) or "")
    assert judge.compared({"a": {1, 2.0}}, {"a": frozenset({1, 2})}) is None
    same = Any()
    assert judge.compared({same: 1}, {same: 1}) is None



PARSER_HEAD = ("from inventory.model import Item\n\n\n"
               "class Anything:\n    def __eq__(self, other):\n        return True\n\n\n"
               "class Attributes(dict):\n    pass\n\n\n"
               "def parse_line(line):\n"
               "    if len(line.split(',')) != 3 or '-' in line:\n"
               "        raise ValueError(line)\n")
ITEM_SHAPES = {
    "dict_subclass": ({}, PARSER_HEAD + (
        "    item = Item('', 0, 0)\n"
        "    object.__setattr__(item, '__dict__', Attributes(\n"
        "        name=Anything(), quantity=Anything(), price=Anything()))\n"
        "    return item\n")),
    "slots": ({"repo/inventory/model.py": (
        "from dataclasses import dataclass\nfrom decimal import Decimal\n\n\n"
        "@dataclass(frozen=True, slots=True)\nclass Item:\n    name: str\n"
        "    quantity: int\n    price: Decimal\n")},
        PARSER_HEAD + "    return Item(Anything(), Anything(), Anything())\n"),
}


@pytest.mark.parametrize("shape", sorted(ITEM_SHAPES))
def test_the_fields_of_a_fixture_object_are_judged_however_held(
    case_factory: CaseFactory, shape: str
) -> None:
    """r2 compares the parsed `Item` (the fixture's dataclass, whose `__eq__` compares the
    fields) with an expected one. The judge read fields only from a `__dict__` of exactly
    `dict`: one replaced by a dict subclass, or a slotted dataclass, let fields equal to
    anything through."""
    files, parser = ITEM_SHAPES[shape]
    case_id = f"item-{shape.replace('_', '-')}"
    root = case_factory(case_id, base="r2-inventory-report",
                        files={**files, "fake/solution/inventory/parser.py": parser})
    v = execute_run(case_id, harness_root=root).report.verification
    assert v.status == "failed" and v.failures == ["tests_failed"], v.reason
    [failed] = [t for t in v.tests if t["outcome"] == "failed"]
    assert "test_fields_are_stripped_and_typed" in failed["id"]
    assert "Anything.__eq__" in failed["detail"]


def test_builtins_the_tested_code_replaced_never_blind_the_judge(
        case_factory: CaseFactory) -> None:
    """The tested code replaces `builtins.dict` by a class that every dict is an instance of
    (unittest's own checks still pass) and no type a subclass of: a judge that looked `dict`
    up when asked no longer saw any dict, so values equal to anything passed inside them."""
    merge = ("import builtins\n\n_dict = dict\n\n\n"
             "class Anything:\n    def __eq__(self, other):\n        return True\n\n\n"
             "class Lying(type):\n"
             "    def __instancecheck__(cls, obj):\n        return isinstance(obj, _dict)\n\n"
             "    def __subclasscheck__(cls, sub):\n        return False\n\n\n"
             "class FakeDict(_dict, metaclass=Lying):\n    pass\n\n\n"
             "builtins.dict = FakeDict\n\n\n"
             "def deep_merge(base, override):\n"
             "    return {k: Anything() for k in {**base, **override}}\n")
    _r3_fails_naming_anything(case_factory, "lying-builtins", merge)


def test_a_framework_function_added_is_named_as_one_replaced(case_factory: CaseFactory) -> None:
    """The identity check compared the functions the framework had; one added beside them (a
    `TestCase.__getattribute__` that hands every test a do-nothing `assertEqual`) went unseen
    and a wrong slugify passed."""
    added = ("import unittest\n\n\ndef _noop(self, *args, **kwargs):\n    return None\n\n\n"
             "def _attribute(self, name, _get=object.__getattribute__):\n"
             "    return _noop.__get__(self) if name == 'assertEqual' else _get(self, name)\n\n\n"
             "unittest.TestCase.__getattribute__ = _attribute\n\n\n"
             "def slugify(value):\n    return 'wrong'\n")
    v = _failed_verification(case_factory, "added-getattribute", added)
    assert v.failures == ["framework_tampered"]
    assert v.framework_tampered == ["TestCase.__getattribute__"]


def test_a_searched_container_and_an_almost_equal_difference_are_judged_too() -> None:
    from cto_harness.core.testdriver import _Judge

    class Anything:
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = object.__hash__

    class Close(float):  # its difference from anything is nothing
        def __sub__(self, other: object) -> float:
            return 0.0

        __rsub__ = __sub__

    judge = _Judge()
    # `"a" in [Anything()]` asks the element first: the list's own content answers.
    assert "Anything.__eq__" in (judge.member("a", ["b", Anything()]) or "")
    assert judge.member("a", ["b", "a"]) is None and judge.member(2, (1, 2.0)) is None
    assert "Close.__sub__" in (judge.almost(Close(9.0), 1.5) or "")
    assert judge.almost(1.0000001, 1) is None


PLAIN_ASSERTS = (
    "import pytest\n\nfrom slugkit import slugify\n\n\n"
    "def test_plain_equality():\n    assert slugify('Hello, World!') == 'hello-world'\n\n\n"
    "def test_plain_membership():\n    assert slugify('A b') in ['a-b', 'c']\n\n\n"
    "def test_approx_is_pytests_own():\n    assert 0.1 + 0.2 == pytest.approx(0.3)\n")


def test_under_pytest_plain_asserts_and_testcase_asserts_are_judged_too(
    case_factory: CaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest compiles `assert a == b` into the test module itself: its assertion rewriter now
    judges each `==` and `in` first, and the TestCase assertions pytest runs are judged as under
    unittest. `pytest.approx` is pytest's own comparison and still passes."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    files = {"repo/tests/test_plain.py": PLAIN_ASSERTS}
    honest = case_factory("plain-honest", toml_edit=_via_pytest,
                          files={**files, "fake/solution/slugkit/text.py": SOLUTION})
    report = execute_run("plain-honest", harness_root=honest).report
    assert report.verdict == "pass", report.verification.reason
    assert report.verification.tests_passed == 8
    hostile = case_factory("plain-hostile", toml_edit=_via_pytest, files={
        **files, "fake/solution/slugkit/text.py": EQUAL_TO_ANYTHING["str_subclass"]})
    v = execute_run("plain-hostile", harness_root=hostile).report.verification
    outcomes = {t["id"].rsplit("::", 1)[-1]: t["outcome"] for t in v.tests}
    assert outcomes.pop("test_approx_is_pytests_own") == "passed"
    assert set(outcomes.values()) == {"failed"} and len(outcomes) == 7
    assert all("cto-harness:" in t["detail"] for t in v.tests if t["outcome"] == "failed")


def test_equality_written_in_python_answers_only_as_it_was(case_factory: CaseFactory) -> None:
    """`Counter.__eq__` is Python: `collections.NotImplemented = True` made an empty Counter
    equal to every dict r3 expects. A Counter is still judged as the dict it is, and passes
    where it equals one; a Fraction is judged by its fields, against its own kind."""
    import collections
    import fractions

    merge = ("import collections\ncollections.NotImplemented = True\n\n\n"
             "def deep_merge(base, override):\n    return collections.Counter()\n")
    root = case_factory("counter-patched", base="r3-config-merge",
                        files={"fake/solution/confmerge/merge.py": merge})
    v = execute_run("counter-patched", harness_root=root).report.verification
    assert v.status == "failed" and v.tests_failed == 3, v.reason
    assert all("NotImplemented, which Counter's equality looks up" in t["detail"]
               for t in v.tests if t["outcome"] == "failed")

    from cto_harness.core.testdriver import _Judge

    class Anything:
        def __eq__(self, other: object) -> bool:
            return True

    class Tally(collections.Counter):  # type: ignore[type-arg]
        pass

    forged = object.__new__(fractions.Fraction)
    forged._numerator = forged._denominator = Anything()  # type: ignore[attr-defined]
    judge = _Judge()
    assert judge.compared(collections.Counter("aab"), {"a": 2, "b": 1}) is None
    assert judge.compared({"n": collections.Counter("a")}, {"n": collections.Counter("a")}) is None
    assert "Counter subclass" in (judge.compared(Tally("a"), {"a": 1}) or "")
    assert "Anything.__eq__" in (judge.compared(forged, fractions.Fraction(1, 2)) or "")
    assert "Fraction.__eq__" in (judge.compared(forged, 3) or "")
    assert judge.compared(fractions.Fraction(1, 2), fractions.Fraction(2, 4)) is None
    collections.Counter.__getitem__ = lambda self, key: Anything()  # type: ignore[method-assign]
    try:
        assert "Counter.__getitem__" in (judge.compared(collections.Counter(), {}) or "")
    finally:
        del collections.Counter.__getitem__  # type: ignore[attr-defined]


def test_pytest_approx_is_judged_by_what_it_holds(case_factory: CaseFactory,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`pytest.approx` was trusted as pytest's own, but the tested code can return one too:
    `approx(Anything())` compares its content with `==` unjudged, so every plain assert of a
    slugify passed; `approx(0, abs=math.inf)` equals every number."""
    import math

    from cto_harness.core.testdriver import _Judge

    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    hostile = ("import pytest\n\n\nclass Anything:\n    def __eq__(self, other):\n"
               "        return True\n\n\ndef slugify(value):\n"
               "    return pytest.approx(Anything())\n")
    root = case_factory("approx-hostile", toml_edit=_via_pytest, files={
        "repo/tests/test_plain.py": PLAIN_ASSERTS, "fake/solution/slugkit/text.py": hostile})
    v = execute_run("approx-hostile", harness_root=root).report.verification
    outcomes = {t["id"].rsplit("::", 1)[-1]: t["outcome"] for t in v.tests}
    assert outcomes.pop("test_approx_is_pytests_own") == "passed"
    assert set(outcomes.values()) == {"failed"}, v.tests

    class Anything:
        def __eq__(self, other: object) -> bool:
            return True

    class Close(float):  # its difference from anything is nothing
        def __rsub__(self, other: object) -> float:
            return 0.0

    class Items(list):  # type: ignore[type-arg]
        def __getitem__(self, index: object) -> object:
            return Anything()

    kinds = sys.modules[type(pytest.approx(0.0)).__module__]
    judge = _Judge(tuple(v for n, v in vars(kinds).items() if n.startswith("Approx")))
    assert "Anything.__eq__" in (judge.compared("a-b", pytest.approx(Anything())) or "")
    assert "Anything.__eq__" in (judge.compared(pytest.approx(Anything()), "a-b") or "")
    assert "tolerance" in (judge.compared(pytest.approx(0, abs=math.inf), 3) or "")
    assert "Close.__rsub__" in (judge.compared([Close(9.0)], pytest.approx([1.5])) or "")
    assert "Items.__getitem__" in (judge.compared(Items([0.0]), pytest.approx([1.0])) or "")
    for value, approx in ((0.1 + 0.2, pytest.approx(0.3)), ([0.1 + 0.2], pytest.approx([0.3])),
                          ({"a": 0.1 + 0.2}, pytest.approx({"a": 0.3})),
                          (3, pytest.approx(3.0, abs=1e-3))):
        assert judge.compared(value, approx) is None and value == approx
    assert judge.compared(pytest.approx(0.3), 0.1 + 0.2) is None


def test_assert_sequence_equal_judges_the_items_it_reads() -> None:
    """`assertSequenceEqual` compares item by item through `len` and `[i]` once `==` says no,
    and passes two sequences of different types whose items are equal: a list subclass whose
    `__getitem__` returns an object equal to anything passed as any list of its length."""
    import unittest

    from cto_harness.core.testdriver import _Judge, _strict_asserts

    class Anything:
        def __eq__(self, other: object) -> bool:
            return True

    class Items(list):  # type: ignore[type-arg]
        def __getitem__(self, index: object) -> object:
            return Anything()

    class Case(unittest.TestCase):
        def runTest(self) -> None:
            pass

    _strict_asserts(Case, _Judge())
    case = Case()
    with pytest.raises(AssertionError, match=r"Items\.__getitem__"):
        case.assertSequenceEqual(Items([None, None]), ["a", "b"])
    case.assertSequenceEqual(("a", "b"), ["a", "b"])  # different types, equal items: passes
    case.assertListEqual(["a"], ["a"])
