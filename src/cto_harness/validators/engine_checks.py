"""The adapter validator per engine (`cto-harness validate adapter --engine NAME`), as Inspect's
sandbox self-check runs per sandbox: each engine has its own real scenarios, run through the real
pipeline in a temporary home, runs folder and harness copy.

- `case`: the Case adapter's scenarios (`validators/adapter.py`, stand-in providers).
- `fake`: the default lane passes with a verifying bundle and leaves the fixture pristine.
- `pi`: the real admitted pi (linked from `$CTO_HARNESS_HOME`'s admission when there is one,
  else fetched through the npm route into the temporary home): no admission, a changed install,
  an unadmitted model and a missing credential each block before pi starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from cto_harness.core.run import RunResult, execute_run
from cto_harness.fsutil import tree_digest
from cto_harness.settings import Settings
from cto_harness.validators.adapter import (
    CASE_ID,
    CHECKS,
    PLANTED_KEY,
    Scenario,
    _bundle_verifies,
    _fake_default_lane,
    expect,
    validator_environ,
)

Check = Callable[[Scenario], str]
PI_MODEL = ("anthropic", "validator-model", "http://127.0.0.1:9")


def _blocked_before_start(result: RunResult, code: str) -> str:
    report = result.report
    codes = [b.code for b in report.blockers]
    expect(report.verdict == "blocked" and result.exit_code == 2,
           f"verdict {report.verdict} (exit {result.exit_code}), expected blocked")
    expect(codes[:1] == [code], f"blockers {codes}, expected {code} first")
    expect(not report.provider_process_started, "the provider process started anyway")
    _bundle_verifies(result)
    leaks = [p.name for p in result.run_dir.rglob("*") if p.is_file()
             and "private" not in p.relative_to(result.run_dir).parts
             and PLANTED_KEY.encode() in p.read_bytes()]
    expect(not leaks, f"the planted key appears in {leaks}")
    return f"{code}, provider not started"


# --- fake ---------------------------------------------------------------------------------------


def _fake_pristine(sc: Scenario) -> str:
    before = tree_digest(sc.case_dir)
    result = sc.run(engine="fake")
    expect(result.report.verdict == "pass", f"fake verdict {result.report.verdict}")
    _bundle_verifies(result)
    expect(tree_digest(sc.case_dir) == before, "the fixture case changed during the run")
    changed = [c.path for c in result.report.changed_files]
    expect(changed == ["slugkit/text.py"], f"changed files {changed}")
    return f"pass, bundle verifies, fixture pristine, changed {changed}"


# --- pi -----------------------------------------------------------------------------------------


def _pi_env(sc: Scenario, **overrides: str | None) -> dict[str, str]:
    return validator_environ(
        {"CTO_HARNESS_HOME": str(sc.home), "CTO_HARNESS_RUNS_DIR": str(sc.runs),
         "CTO_HARNESS_PI_MODEL_PROVIDER": PI_MODEL[0], "CTO_HARNESS_PI_MODEL": PI_MODEL[1],
         "CTO_HARNESS_PI_MODEL_BASE_URL": PI_MODEL[2], "CTO_HARNESS_PI_TIMEOUT_SECONDS": "60",
         "ANTHROPIC_API_KEY": PLANTED_KEY}, overrides)


def _pi_run(sc: Scenario, **overrides: str | None) -> RunResult:
    policy = sc.harness_root / "providers" / "pi" / "policy.toml"
    table = (f'\n[[models]]\nprovider = "{PI_MODEL[0]}"\nmodel = "{PI_MODEL[1]}"\n'
             f'base_url = "{PI_MODEL[2]}"\n')
    if table not in policy.read_text():
        policy.write_text(policy.read_text() + table)
    env = _pi_env(sc, **overrides)
    return execute_run(CASE_ID, "pi", harness_root=sc.harness_root,
                       settings=Settings.from_env(env), environ=env)


def _admit_pi(sc: Scenario, source_home: Mapping[str, str]) -> Path:
    """pi admitted in the scenario home: the caller's admission linked in (file by file, never
    written through), else fetched and installed through the npm route. Returns the store tree."""
    from cto_harness.engines.pi.install import choose_admission, link_tree
    from cto_harness.providers.npm import admit_npm_package
    from cto_harness.providers.policy import default_policy_path, load_policy
    from cto_harness.providers.registry import record_admission

    policy = load_policy(default_policy_path(sc.harness_root, "pi"))
    settings = Settings.from_env(_pi_env(sc))
    try:
        record = choose_admission(Settings.from_env(dict(source_home)), policy, None)
    except Exception:
        report = admit_npm_package(None, None, policy, settings, progress=None)
        return Path(report.artifact.store_path)
    source = Path(record.store_path).parent
    target = settings.providers_dir / "pi" / source.name
    link_tree(source, target)
    record_admission(settings, record.model_copy(update={
        "store_path": str(target / "tree"), "build_report": str(target / "build-report.json")}))
    return target / "tree"


def _pi_gates(sc: Scenario) -> str:
    results = [_blocked_before_start(_pi_run(sc), "provider_unavailable")]
    tree = _admit_pi(sc, os.environ)
    results.append(_blocked_before_start(
        _pi_run(sc, CTO_HARNESS_PI_MODEL="not-admitted"), "model_not_admitted"))
    results.append(_blocked_before_start(_pi_run(sc, ANTHROPIC_API_KEY=None),
                                         "credentials_missing"))
    # A changed file in the install: replaced by a changed copy (the link to the caller's store
    # is broken first, so only this scenario's store changes).
    target = next(p for p in (tree / "node_modules").rglob("main.js") if p.is_file())
    data = target.read_bytes() + b"\n// changed after admission\n"
    target.unlink()
    target.write_bytes(data)
    results.append(_blocked_before_start(_pi_run(sc), "provider_not_admitted"))
    return "; ".join(results)


ENGINE_CHECKS: dict[str, dict[str, Check]] = {
    "case": CHECKS,
    "fake": {"fake_default_lane": _fake_default_lane, "fake_fixture_pristine": _fake_pristine},
    "pi": {"pi_gates_block_before_start": _pi_gates},
}


def checks_for(engine: str) -> dict[str, Check]:
    if engine not in ENGINE_CHECKS:
        raise ValueError(f"no adapter checks for engine {engine!r} "
                         f"(known: {', '.join(sorted(ENGINE_CHECKS))})")
    return ENGINE_CHECKS[engine]


__all__ = ["ENGINE_CHECKS", "checks_for"]
