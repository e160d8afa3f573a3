"""`cto-harness validate adapter --engine pi`, the run-evidence checks: breaking the one behaviour a
check guards turns that check red (each break runs only its own check, on the real admitted pi).
The CLI run of every check is in test_pi_validator.py."""

from __future__ import annotations

import pytest

from pi_breaks import RUN_CHECKS, assert_break_turns_red
from pi_helpers import AdmittedPi

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", RUN_CHECKS)
def test_breaking_what_a_run_check_guards_turns_it_red(
    name: str, admitted_pi: AdmittedPi, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_break_turns_red(name, admitted_pi.home, monkeypatch)
