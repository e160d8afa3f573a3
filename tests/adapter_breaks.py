"""Breaks for the adapter validator's tests: each makes the harness lose one behaviour a check
guards (a gate dropped, a time-out not reported, every write allowed, ...), so a test can show
the check turns red without it. Shared by the Case, fake and pi validator tests."""

from __future__ import annotations

from typing import Any

import pytest

from cto_harness.errors import Blocked

Mp = pytest.MonkeyPatch


def drop_gate(mp: Mp, engine_module: str, code: str) -> None:
    """Make the engine's gates (`run_gates` as `engine_module` imports it) let a run through
    where gate `code` would have blocked it."""
    def run_gates(ctx: Any, admission: Any, gates: Any) -> Any:
        for gate in gates:
            try:
                admission = gate(ctx, admission)
            except Blocked as exc:
                if exc.code != code:
                    raise
        return admission

    mp.setattr(f"{engine_module}.run_gates", run_gates)


def timeout_not_reported(mp: Mp) -> None:
    import cto_harness.core.run as run

    original = run.run_process

    def run_process(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        result.timed_out = False
        return result

    mp.setattr(run, "run_process", run_process)


def everything_allowed(mp: Mp) -> None:
    import cto_harness.core.run as run

    original = run.split_changes

    def split(changes: Any, allowed: Any, *rest: Any, **named: Any) -> Any:
        return original(changes, ["**"], *rest, **named)

    mp.setattr(run, "split_changes", split)


def verify_accepts_anything(mp: Mp) -> None:
    import cto_harness.evidence.verify as verify
    from cto_harness.contracts import Report

    mp.setattr(verify, "verify_bundle", lambda root, *a, **kw: Report.model_validate_json(
        (root / "report.json").read_text()))


def digest_cached_beside_the_tree(mp: Mp) -> None:
    # A tempting speed-up with a side effect: caching a tree's digest inside the tree (here, the
    # fixture). Hard-linked copies would be another, but isolation's guard catches those too.
    import cto_harness.core.run as run

    original = run.tree_digest

    def tree_digest(root: Any, **kwargs: Any) -> Any:
        digest = original(root, **kwargs)
        (root / ".digest-cache").write_text(digest)
        return digest

    mp.setattr(run, "tree_digest", tree_digest)


def verification_ignored(mp: Mp) -> None:
    """The verdict no longer asks the harness's own verification (it trusts the provider)."""
    import cto_harness.core.report as report

    original = report.pass_conditions

    def pass_conditions(*args: Any, **kwargs: Any) -> dict[str, bool]:
        return {**original(*args, **kwargs), "harness_verification_passed": True}

    mp.setattr(report, "pass_conditions", pass_conditions)

