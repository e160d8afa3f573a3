"""The harness's own verification: counts are read from real runner output; no tests is a fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CaseFactory
from cto_harness.core.run import execute_run
from cto_harness.core.testrun import parse_counts


def _real_output(tmp_path: Path, framework: str, body: str) -> str:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "__init__.py").write_text("")
    (tests / "test_x.py").write_text(body)
    argv = ([sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."]
            if framework == "unittest" else [sys.executable, "-m", "pytest", "-q", "tests"])
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True)
    return proc.stdout + proc.stderr


MIXED = """
import unittest
class T(unittest.TestCase):
    def test_ok(self): pass
    def test_ok2(self): pass
    def test_bad(self): self.assertEqual(1, 2)
    def test_err(self): raise RuntimeError
    @unittest.skip("no")
    def test_skip(self): pass
"""


@pytest.mark.parametrize("framework", ["unittest", "pytest"])
def test_counts_from_a_real_mixed_run(tmp_path: Path, framework: str) -> None:
    ran, passed, failed = parse_counts(framework, _real_output(tmp_path, framework, MIXED))
    assert (passed, failed) == (2, 2)
    assert ran == (5 if framework == "unittest" else 4)


@pytest.mark.parametrize("framework", ["unittest", "pytest"])
def test_counts_when_no_test_exists(tmp_path: Path, framework: str) -> None:
    assert parse_counts(framework, _real_output(tmp_path, framework, "x = 1\n")) == (0, 0, 0)


def test_fewer_tests_than_expected_fails(case_factory: CaseFactory) -> None:
    root = case_factory("too-few", toml_edit=lambda t: t.replace("min_tests = 4", "min_tests = 50"))
    result = execute_run("too-few", harness_root=root)
    assert result.report.verification.status == "failed"
    assert result.report.verdict == "fail"
