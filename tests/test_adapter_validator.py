"""The adapter validator (DESIGN section 8): every check passes on the real code (one run of the
whole validator through its contract script), and breaking the one behaviour a check guards turns
that check red (each break runs only its own check, so the suite stays linear in the checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace

import pytest

from adapter_breaks import (
    digest_cached_beside_the_tree,
    drop_gate,
    everything_allowed,
    timeout_not_reported,
    verify_accepts_anything,
)
from conftest import HARNESS_ROOT, REPO_ROOT
from cto_harness.validators.adapter import CHECKS, run_checks
from cto_harness.validators.engine_checks import ENGINE_CHECKS

pytestmark = pytest.mark.slow
DESIGN_CHECKS = {
    "command_shape", "task_contract", "provider_unavailable_fail_closed",
    "provider_timeout_fail_closed", "model_provider_gate_blocks", "credentials_gate_blocks",
    "digest_gate_blocks", "identity_gate_blocks", "non_executable_blocks",
    "source_commit_gate_blocks", "bun_missing_blocks", "allowed_writes_enforced",
    "fake_default_lane", "same_run_baseline", "evidence_shape", "no_mutation",
}
Mp = pytest.MonkeyPatch
CASE_ENGINE = "cto_harness.engines.case.engine"


def test_the_script_passes_every_design_check_with_json() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "harness/runner/validate-case-provider-adapter.py"),
         "--harness-root", str(HARNESS_ROOT), "--json"], capture_output=True, text=True)
    result = json.loads(proc.stdout)
    failed = [c for c in result["checks"] if not c["passed"]]
    assert proc.returncode == 0 and result["ok"] is True, failed
    assert {c["name"] for c in result["checks"]} >= DESIGN_CHECKS
    assert all(set(c) == {"name", "passed", "detail", "duration_ms"} for c in result["checks"])


@pytest.mark.parametrize("root", ["/", "does-not-exist", "src"])
def test_a_wrong_harness_root_is_a_clear_usage_error(root: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "harness/runner/validate-case-provider-adapter.py"),
         "--harness-root", root], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 64
    assert "is not a harness folder" in proc.stderr


def _default_engine_case(mp: Mp) -> None:
    mp.setattr("cto_harness.engines.DEFAULT_ENGINE", "case")


def _accept_any_command(mp: Mp) -> None:
    mp.setattr("cto_harness.engines.case.command.check_case_argv", lambda argv, **kw: None)


def _no_contract_scan(mp: Mp) -> None:
    from cto_harness.engines.case.engine import CaseEngine

    mp.setattr("cto_harness.core.run.scan_contract",
               lambda *a, **k: {"scanned_strings": 0, "outside_paths": [], "passed": True})
    mp.setattr(CaseEngine, "_check_contract", lambda self, *a, **k: None)


def _any_binary_admitted(mp: Mp) -> None:
    from cto_harness.providers.registry import list_admissions

    def lookup(settings, binary, provider="case"):  # type: ignore[no-untyped-def]
        return next((r for r in list_admissions(settings) if r.status == "admitted"), None)

    mp.setattr("cto_harness.engines.case.engine.lookup_admission", lookup)


def _pin_not_checked(mp: Mp) -> None:
    import cto_harness.providers.build as build

    original = build._clone_at_pin

    def clone(info, clone_dir, commit):  # type: ignore[no-untyped-def]
        head = subprocess.run(["git", "-C", str(info.location), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        original(info, clone_dir, head)

    mp.setattr(build, "_clone_at_pin", clone)


def _bun_assumed(mp: Mp) -> None:
    import cto_harness.providers.build as build

    mp.setattr(build, "find_bun", lambda environ: build._Tool("/bin/true", "assumed"))


def _no_baseline(mp: Mp) -> None:
    from cto_harness.engines.case.engine import CaseEngine

    mp.setattr(CaseEngine, "needs_baseline", False)


def _model_not_checked(mp: Mp) -> None:
    def model(self, ctx, admission):  # type: ignore[no-untyped-def]
        return replace(admission, model=admission.model.model_copy(update={"admitted": True}))

    mp.setattr("cto_harness.engines.case.engine.CaseEngine._model", model)


BREAKS: dict[str, Callable[[Mp], None]] = {
    "fake_default_lane": _default_engine_case,
    "command_shape": _accept_any_command,
    "task_contract": _no_contract_scan,
    "provider_unavailable_fail_closed": lambda mp: drop_gate(mp, CASE_ENGINE, "provider_unavailable"),
    "provider_timeout_fail_closed": timeout_not_reported,
    "model_provider_gate_blocks": _model_not_checked,
    "credentials_gate_blocks": lambda mp: mp.setattr(
        "cto_harness.engines.model.credentials_present", lambda ctx, admission: admission),
    "digest_gate_blocks": _any_binary_admitted,
    "identity_gate_blocks": lambda mp: mp.setattr(
        "cto_harness.engines.case.engine.CaseEngine._identity",
        lambda self, ctx, admission: admission),
    "non_executable_blocks": lambda mp: drop_gate(mp, CASE_ENGINE, "not_executable"),
    "source_commit_gate_blocks": _pin_not_checked,
    "bun_missing_blocks": _bun_assumed,
    "allowed_writes_enforced": everything_allowed,
    "same_run_baseline": _no_baseline,
    "evidence_shape": verify_accepts_anything,
    "no_mutation": digest_cached_beside_the_tree,
}


def test_every_check_has_a_break() -> None:
    assert set(BREAKS) == set(CHECKS) >= DESIGN_CHECKS


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_breaking_a_guarded_behaviour_turns_its_check_red(name: str, monkeypatch: Mp) -> None:
    # Only the targeted check runs: the all-green run of every check is the script test above.
    BREAKS[name](monkeypatch)
    (result,) = run_checks(HARNESS_ROOT, [name])
    assert result.name == name
    assert not result.passed, f"{name} still passes with its guard broken: {result.detail}"


# The fake engine's own checks (`validate adapter --engine fake`): each breaks too.
FAKE_BREAKS: dict[str, Callable[[Mp], None]] = {
    "fake_default_lane": _default_engine_case,
    "fake_fixture_pristine": digest_cached_beside_the_tree,
}


def test_every_fake_check_has_a_break() -> None:
    assert set(FAKE_BREAKS) == set(ENGINE_CHECKS["fake"])


@pytest.mark.parametrize("name", sorted(FAKE_BREAKS))
def test_breaking_what_a_fake_check_guards_turns_it_red(name: str, monkeypatch: Mp) -> None:
    FAKE_BREAKS[name](monkeypatch)
    (result,) = run_checks(HARNESS_ROOT, [name], ENGINE_CHECKS["fake"])
    assert result.name == name
    assert not result.passed, f"{name} still passes with its guard broken: {result.detail}"
