"""`cto-harness validate adapter --engine pi`: every check passes on the real admitted pi (one
run of the whole validator through the CLI), and breaking the one behaviour a check guards
turns that check red (each break runs only its own check). The validator links pi from the
session's admission (`CTO_HARNESS_HOME`), never fetching it again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from adapter_breaks import (
    digest_cached_beside_the_tree,
    drop_gate,
    everything_allowed,
    timeout_not_reported,
    verification_ignored,
    verify_accepts_anything,
)
from cto_harness.validators.adapter import run_checks
from cto_harness.validators.pi_checks import PI_CHECKS
from pi_helpers import REPO_ROOT, AdmittedPi

pytestmark = pytest.mark.slow
Mp = pytest.MonkeyPatch
PI_ENGINE = "cto_harness.engines.pi.engine"
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


def _extensions_allowed(mp: Mp) -> None:
    from cto_harness.engines.pi.engine import PiEngine

    original = PiEngine.prepare

    def prepare(self: Any, ctx: Any, admission: Any) -> Any:
        launch = original(self, ctx, admission)
        return replace(launch, argv=[a for a in launch.argv if a != "--no-extensions"])

    mp.setattr(PiEngine, "prepare", prepare)


def _no_contract_scan(mp: Mp) -> None:
    mp.setattr("cto_harness.core.run.scan_contract",
               lambda *a, **k: {"scanned_strings": 0, "outside_paths": [], "passed": True})
    mp.setattr(f"{PI_ENGINE}.outside_paths", lambda texts, workspace: [])


def _changed_install_accepted(mp: Mp) -> None:
    """The run's copy is no longer compared with the record before pi runs."""
    mp.setattr("cto_harness.engines.pi.install.changed_parts", lambda copy, record: [])


def _passthrough(mp: Mp, target: str) -> None:
    mp.setattr(target, lambda self, ctx, admission: admission)


def _model_not_checked(mp: Mp) -> None:
    def model(self: Any, ctx: Any, admission: Any) -> Any:
        return replace(admission, model=admission.model.model_copy(update={"admitted": True}))

    mp.setattr(f"{PI_ENGINE}.PiEngine._model", model)


def _endpoint_forgotten(mp: Mp) -> None:
    from cto_harness.contracts import ModelEndpointInfo

    mp.setattr(f"{PI_ENGINE}.PiEngine.model_endpoint",
               staticmethod(lambda ctx, admission: ModelEndpointInfo(mode="live")))


BREAKS: dict[str, Callable[[Mp], None]] = {
    "command_shape": _extensions_allowed,
    "task_contract": _no_contract_scan,
    "provider_unavailable_fail_closed": lambda mp: drop_gate(mp, PI_ENGINE,
                                                             "provider_unavailable"),
    "provider_timeout_fail_closed": timeout_not_reported,
    "model_provider_gate_blocks": _model_not_checked,
    "credentials_gate_blocks": lambda mp: mp.setattr(
        "cto_harness.engines.model.credentials_present", lambda ctx, admission: admission),
    "digest_gate_blocks": _changed_install_accepted,
    "identity_gate_blocks": lambda mp: _passthrough(mp, f"{PI_ENGINE}.PiEngine._identity"),
    "allowed_writes_enforced": everything_allowed,
    "verification_decides": verification_ignored,
    "same_run_baseline": lambda mp: mp.setattr(f"{PI_ENGINE}.PiEngine.needs_baseline", False),
    "evidence_shape": verify_accepts_anything,
    "no_mutation": digest_cached_beside_the_tree,
    "scripted_endpoint": _endpoint_forgotten,
}


def test_every_pi_check_has_a_break() -> None:
    assert set(BREAKS) == set(PI_CHECKS)


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_breaking_what_a_pi_check_guards_turns_it_red(
    name: str, admitted_pi: AdmittedPi, monkeypatch: Mp, tmp_path: Path
) -> None:
    monkeypatch.setenv("CTO_HARNESS_HOME", str(admitted_pi.home))  # pi is linked from here
    BREAKS[name](monkeypatch)
    (result,) = run_checks(HARNESS_ROOT, [name], PI_CHECKS)
    assert result.name == name
    assert not result.passed, f"{name} still passes with its guard broken: {result.detail}"
