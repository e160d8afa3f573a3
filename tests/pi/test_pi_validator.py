"""`cto-harness validate adapter --engine pi`: every check passes on the real admitted pi (one
run of the whole validator through the CLI), and every check has a break (the break tests:
test_pi_breaks_gates.py, test_pi_breaks_runs.py). The validator links pi from the session's
admission (`CTO_HARNESS_HOME`), never fetching it again."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cto_harness.validators.pi_checks import PI_CHECKS
from pi_breaks import BREAKS, GATE_CHECKS, RUN_CHECKS
from pi_helpers import REPO_ROOT, AdmittedPi

pytestmark = pytest.mark.slow
HARNESS_ROOT = REPO_ROOT / "harness"
# The DESIGN section 8 names that apply to pi (no source build: no commit, Bun or execute-bit
# gate of its own; no fake lane).
DESIGN_CHECKS = {
    "command_shape", "task_contract", "provider_unavailable_fail_closed",
    "provider_timeout_fail_closed", "model_provider_gate_blocks", "credentials_gate_blocks",
    "digest_gate_blocks", "identity_gate_blocks", "allowed_writes_enforced",
    "same_run_baseline", "evidence_shape", "no_mutation",
}


def test_the_cli_passes_every_pi_check(admitted_pi: AdmittedPi) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTO_HARNESS_")}
    env |= {"CTO_HARNESS_HOME": str(admitted_pi.home), "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "cto_harness", "validate", "adapter", "--engine", "pi", "--json",
         "--harness-root", str(HARNESS_ROOT)],
        env=env, capture_output=True, text=True, timeout=1800)
    result = json.loads(proc.stdout)
    failed = [c for c in result["checks"] if not c["passed"]]
    assert proc.returncode == 0 and result["ok"] is True, failed
    assert [c["name"] for c in result["checks"]] == list(PI_CHECKS)
    assert set(PI_CHECKS) >= DESIGN_CHECKS


def test_every_pi_check_has_a_break_in_one_break_file() -> None:
    assert set(BREAKS) == set(PI_CHECKS)
    assert sorted(GATE_CHECKS + RUN_CHECKS) == sorted(PI_CHECKS)
