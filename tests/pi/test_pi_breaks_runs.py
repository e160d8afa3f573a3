"""`cto-harness validate adapter --engine pi`, the run-evidence checks: breaking the one behaviour a
check guards turns that check red (each break runs only its own check, on the real admitted pi).
The CLI run of every check is in test_pi_validator.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from cto_harness.validators.adapter import run_checks
from cto_harness.validators.pi_checks import PI_CHECKS
from pi_breaks import BREAKS, RUN_CHECKS
from pi_helpers import REPO_ROOT, AdmittedPi

pytestmark = pytest.mark.slow
HARNESS_ROOT = REPO_ROOT / "harness"


@pytest.mark.parametrize("name", RUN_CHECKS)
def test_breaking_what_a_pi_check_guards_turns_it_red(
    name: str, admitted_pi: AdmittedPi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CTO_HARNESS_HOME", str(admitted_pi.home))  # pi is linked from here
    BREAKS[name](monkeypatch)
    (result,) = run_checks(HARNESS_ROOT, [name], PI_CHECKS)
    assert result.name == name
    assert not result.passed, f"{name} still passes with its guard broken: {result.detail}"
