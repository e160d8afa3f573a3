"""The adapter validator per engine (`cto-harness validate adapter --engine NAME`), as Inspect's
sandbox self-check runs per sandbox: each engine has its own real scenarios, run through the real
pipeline in a temporary home, runs folder and harness copy.

- `case`: the Case adapter's scenarios (`validators/adapter.py`, stand-in providers).
- `fake`: the default lane passes with a verifying bundle and leaves the fixture pristine.
- `pi`: the real admitted pi driven by the scripted model endpoint (`validators/pi_checks.py`):
  the command shape, the task, every gate, the time limit, allowed writes, the harness's own
  verification, the baseline, the bundle, no mutation, the endpoint's record.
"""

from __future__ import annotations

from collections.abc import Callable

from cto_harness.fsutil import tree_digest
from cto_harness.validators.adapter import (
    CHECKS,
    Scenario,
    _bundle_verifies,
    _fake_default_lane,
    expect,
)
from cto_harness.validators.pi_checks import PI_CHECKS

Check = Callable[[Scenario], str]


def _fake_pristine(sc: Scenario) -> str:
    before = tree_digest(sc.case_dir)
    result = sc.run(engine="fake")
    expect(result.report.verdict == "pass", f"fake verdict {result.report.verdict}")
    _bundle_verifies(result)
    expect(tree_digest(sc.case_dir) == before, "the fixture case changed during the run")
    changed = [c.path for c in result.report.changed_files]
    expect(changed == ["slugkit/text.py"], f"changed files {changed}")
    return f"pass, bundle verifies, fixture pristine, changed {changed}"


ENGINE_CHECKS: dict[str, dict[str, Check]] = {
    "case": CHECKS,
    "fake": {"fake_default_lane": _fake_default_lane, "fake_fixture_pristine": _fake_pristine},
    "pi": PI_CHECKS,
}


def checks_for(engine: str) -> dict[str, Check]:
    if engine not in ENGINE_CHECKS:
        raise ValueError(f"no adapter checks for engine {engine!r} "
                         f"(known: {', '.join(sorted(ENGINE_CHECKS))})")
    return ENGINE_CHECKS[engine]


__all__ = ["ENGINE_CHECKS", "checks_for"]
