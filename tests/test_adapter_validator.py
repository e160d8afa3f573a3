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

from conftest import HARNESS_ROOT, REPO_ROOT
from cto_harness.errors import Blocked
from cto_harness.validators.adapter import CHECKS, run_checks

pytestmark = pytest.mark.slow
DESIGN_CHECKS = {
    "command_shape", "task_contract", "provider_unavailable_fail_closed",
    "provider_timeout_fail_closed", "model_provider_gate_blocks", "credentials_gate_blocks",
    "digest_gate_blocks", "identity_gate_blocks", "non_executable_blocks",
    "source_commit_gate_blocks", "bun_missing_blocks", "allowed_writes_enforced",
    "fake_default_lane", "same_run_baseline", "evidence_shape", "no_mutation",
}
Mp = pytest.MonkeyPatch


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


def _drop_gate(mp: Mp, code: str) -> None:
    """Make the Case engine's gates let a run through where gate `code` would have blocked it."""
    def run_gates(ctx, admission, gates):  # type: ignore[no-untyped-def]
        for gate in gates:
            try:
                admission = gate(ctx, admission)
            except Blocked as exc:
                if exc.code != code:
                    raise
        return admission

    mp.setattr("cto_harness.engines.case.engine.run_gates", run_gates)


def _default_engine_case(mp: Mp) -> None:
    mp.setattr("cto_harness.engines.DEFAULT_ENGINE", "case")


def _accept_any_command(mp: Mp) -> None:
    mp.setattr("cto_harness.engines.case.command.check_case_argv", lambda argv, **kw: None)


def _no_contract_scan(mp: Mp) -> None:
    from cto_harness.engines.case.engine import CaseEngine

    mp.setattr("cto_harness.core.run.scan_contract",
               lambda *a, **k: {"scanned_strings": 0, "outside_paths": [], "passed": True})
    mp.setattr(CaseEngine, "_check_contract", lambda self, *a, **k: None)


def _timeout_not_reported(mp: Mp) -> None:
    import cto_harness.core.run as run

    original = run.run_process

    def run_process(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = original(*args, **kwargs)
        result.timed_out = False
        return result

    mp.setattr(run, "run_process", run_process)


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


def _everything_allowed(mp: Mp) -> None:
    import cto_harness.core.run as run

    original = run.split_changes

    def split(changes, allowed, *rest, **named):  # type: ignore[no-untyped-def]
        return original(changes, ["**"], *rest, **named)

    mp.setattr(run, "split_changes", split)


def _no_baseline(mp: Mp) -> None:
    from cto_harness.engines.case.engine import CaseEngine

    mp.setattr(CaseEngine, "needs_baseline", False)


def _verify_accepts_anything(mp: Mp) -> None:
    import cto_harness.evidence.verify as verify
    from cto_harness.contracts import Report

    mp.setattr(verify, "verify_bundle", lambda root, *a, **kw: Report.model_validate_json(
        (root / "report.json").read_text()))


def _digest_cached_beside_the_tree(mp: Mp) -> None:
    # A tempting speed-up with a side effect: caching a tree's digest inside the tree (here, the
    # fixture). Hard-linked copies would be another, but isolation's guard catches those too.
    import cto_harness.core.run as run

    original = run.tree_digest

    def tree_digest(root, **kwargs):  # type: ignore[no-untyped-def]
        digest = original(root, **kwargs)
        (root / ".digest-cache").write_text(digest)
        return digest

    mp.setattr(run, "tree_digest", tree_digest)


def _model_not_checked(mp: Mp) -> None:
    def model(self, ctx, admission):  # type: ignore[no-untyped-def]
        return replace(admission, model=admission.model.model_copy(update={"admitted": True}))

    mp.setattr("cto_harness.engines.case.engine.CaseEngine._model", model)


BREAKS: dict[str, Callable[[Mp], None]] = {
    "fake_default_lane": _default_engine_case,
    "command_shape": _accept_any_command,
    "task_contract": _no_contract_scan,
    "provider_unavailable_fail_closed": lambda mp: _drop_gate(mp, "provider_unavailable"),
    "provider_timeout_fail_closed": _timeout_not_reported,
    "model_provider_gate_blocks": _model_not_checked,
    "credentials_gate_blocks": lambda mp: mp.setattr(
        "cto_harness.engines.model.credentials_present", lambda ctx, admission: admission),
    "digest_gate_blocks": _any_binary_admitted,
    "identity_gate_blocks": lambda mp: mp.setattr(
        "cto_harness.engines.case.engine.CaseEngine._identity",
        lambda self, ctx, admission: admission),
    "non_executable_blocks": lambda mp: _drop_gate(mp, "not_executable"),
    "source_commit_gate_blocks": _pin_not_checked,
    "bun_missing_blocks": _bun_assumed,
    "allowed_writes_enforced": _everything_allowed,
    "same_run_baseline": _no_baseline,
    "evidence_shape": _verify_accepts_anything,
    "no_mutation": _digest_cached_beside_the_tree,
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
