"""Real evidence for the viewer's tests, made once per session with the real pipeline
(`execute_run` with the fake engine, `run_suite`) in a home of its own: a passing run, a failing
run, a run whose provider wrote hostile file names and test text (verified: a hostile provider
can put them in a genuine bundle), and three suites. Tampered bundles start from copies of these.
Also a real Chromium driven by Playwright (skipped with its reason only where none is found)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import HARNESS_ROOT
from cto_harness.core.run import execute_run
from cto_harness.core.suite import run_suite
from cto_harness.settings import Settings

WRONG = "def slugify(value):\n    return value.lower()\n"
# Names a provider can give files: markup, an unclosed script, ANSI escapes, a bidi override,
# Markdown that would fake a verdict.
HOSTILE_NAMES = (
    "<img src=x onerror=window.__pwned=1>.py",
    "<script>window.__pwned=2.py",
    "ansi-\x1b[2J\x1b[31mPASS.txt",
    "bidi-\u202etxt.exe",
    "**PASS** [ok](javascript:window.__pwned=3).md",
)
HOSTILE_CONTENT = "<script>window.__pwned=4</script>\n\x1b[1;31m**PASS**\x1b[0m \u202egnp.exe\n"
HOSTILE_TEST = '''import unittest


class HostileTest(unittest.TestCase):
    def test_docstring_is_markup(self):
        """<script>window.__pwned=5</script> \\x1b[2J **PASS**"""
        self.assertTrue(True)
'''


@dataclass(frozen=True)
class Evidence:
    home: Path
    public_key: Path
    harness_root: Path
    passing: Path
    failing: Path
    hostile: Path
    suite: Path  # r1 (passes) and wrong-slugify (fails), 2 repeats
    suite_fixed: Path  # the same cases where wrong-slugify passes, 1 repeat
    runs_dir: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "CTO_HARNESS_HOME": str(self.home),
                "CTO_HARNESS_RUNS_DIR": str(self.runs_dir)}


def _add_case(root: Path, case_id: str, *, files: dict[str, str],
              allowed: str | None = None) -> None:
    folder = root / "evals" / "cases" / case_id
    shutil.copytree(HARNESS_ROOT / "evals" / "cases" / "r1-string-slugify", folder)
    text = (folder / "case.toml").read_text().replace('id = "r1-string-slugify"',
                                                      f'id = "{case_id}"')
    if allowed:
        text = text.replace('allowed_paths = ["slugkit/text.py"]', f"allowed_paths = {allowed}")
    (folder / "case.toml").write_text(text)
    for rel, content in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(content)


@pytest.fixture(scope="session")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evidence]:
    base = tmp_path_factory.mktemp("viewer-evidence")
    home, runs = base / "home", base / "home" / "harness-runs"
    root, fixed = base / "harness", base / "harness-fixed"
    shutil.copytree(HARNESS_ROOT, root)
    _add_case(root, "wrong-slugify", files={"fake/solution/slugkit/text.py": WRONG})
    _add_case(root, "hostile-names", allowed='["**"]', files={
        **{f"fake/solution/{name}": HOSTILE_CONTENT for name in HOSTILE_NAMES},
        "repo/tests/test_hostile.py": HOSTILE_TEST,
    })
    shutil.copytree(HARNESS_ROOT, fixed)
    _add_case(fixed, "wrong-slugify", files={})  # the right solution this time
    with pytest.MonkeyPatch.context() as patch:
        # The suite's worker processes read their settings from the environment.
        patch.setenv("CTO_HARNESS_HOME", str(home))
        patch.setenv("CTO_HARNESS_RUNS_DIR", str(runs))
        settings = Settings.from_env()
        passing = execute_run("r1-string-slugify", harness_root=root, settings=settings)
        failing = execute_run("wrong-slugify", harness_root=root, settings=settings)
        hostile = execute_run("hostile-names", harness_root=root, settings=settings)
        cases = ["r1-string-slugify", "wrong-slugify"]
        run_suite(cases, harness_root=root, repeat=2, jobs=2, suite_dir=base / "suite",
                  progress=None)
        run_suite(cases, harness_root=fixed, repeat=1, jobs=2, suite_dir=base / "suite-fixed",
                  progress=None)
    assert passing.report.verdict == "pass", passing.report.blockers
    assert failing.report.verdict == "fail" and hostile.report.verdict == "pass", (
        failing.report.pass_conditions, hostile.report.pass_conditions)
    yield Evidence(home, home / "keys" / "evidence-ed25519.pub", root, passing.run_dir,
                   failing.run_dir, hostile.run_dir, base / "suite", base / "suite-fixed", runs)


def copy_bundle(source: Path, target: Path) -> Path:
    """A copy that still verifies (file times kept: freshness compares them with the run)."""
    shutil.copytree(source, target, symlinks=True)
    return target
