"""The pi engine's adapter checks (`cto-harness validate adapter --engine pi`): real scenarios on
the real admitted pi (`@mariozechner/pi-coding-agent` under its admitted Bun), driven offline by
the harness's scripted model endpoint, each proving one behaviour of the contract the Case
engine is held to (DESIGN section 8's names where they apply).

pi is admitted into the scenario's home by linking the launch copy of the caller's admission
(`$CTO_HARNESS_HOME`) file by file, never written through; without one it is fetched through
the npm route. A check
that changes an install does so in a home of its own, on a copy (a replaced file, not a write
through a link). The scripted pass run is made once per scenario and shared by the checks that
read it; the digests `no_mutation` compares are taken just before it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cto_harness.core.run import RunResult, execute_run
from cto_harness.errors import Blocked, CheckFailed
from cto_harness.fsutil import sha256_file, tree_digest
from cto_harness.settings import Settings
from cto_harness.validators.adapter import (
    CASE_ID,
    PLANTED_KEY,
    Scenario,
    _bundle_verifies,
    baseline_paired,
    blocked_with,
    evidence_complete,
    expect,
    outside_write_failed,
    timed_out,
    validator_environ,
)

# Admitted in the scenario's copy of the pi policy: one scripted entry, one live entry whose
# base URL (port 9, discard) answers nobody.
SCRIPTED_MODEL = ("anthropic", "validator-model")
LIVE_URL = "http://127.0.0.1:9"
PASS_SCRIPT, WRONG_FIX, OUTSIDE_WRITE, HANG = "pi-happy", "pi-wrong-fix", "pi-outside-write", "pi-hang"
FLAGS = ["--print", "--mode", "json", "--no-session"]
SANDBOXING_FLAGS = ["--no-extensions", "--no-skills", "--no-prompt-templates", "--no-themes",
                    "--no-context-files"]
Check = Callable[[Scenario], str]


# --- the scenario's pi ---------------------------------------------------------------------------


def _policy_path(sc: Scenario) -> Path:
    return sc.harness_root / "providers" / "pi" / "policy.toml"


def _with_models(root: Path) -> None:
    """The pi policy under the harness folder `root` admits the validator's two models."""
    policy = root / "providers" / "pi" / "policy.toml"
    tables = (f'\n[[models]]\nprovider = "{SCRIPTED_MODEL[0]}"\nmodel = "{SCRIPTED_MODEL[1]}"\n'
              f'endpoint = "scripted"\n'
              f'\n[[models]]\nprovider = "{SCRIPTED_MODEL[0]}"\nmodel = "{SCRIPTED_MODEL[1]}"\n'
              f'base_url = "{LIVE_URL}"\n')
    if tables not in policy.read_text():
        policy.write_text(policy.read_text() + tables)


def _settings(home: Path) -> Settings:
    return Settings.from_env({**os.environ, "CTO_HARNESS_HOME": str(home)})


def admit_pi(sc: Scenario, home: Path) -> Path:
    """pi admitted in `home`: linked from the launch copy of the caller's admission (or of the
    scenario's own when the caller has none: fetched once, through the npm route), never from
    a store (whose link counts the outside-write guard watches). Returns the store tree."""
    import shutil

    from cto_harness.engines.pi.install import choose_admission, launch_copy, link_tree
    from cto_harness.providers.npm import NpmPaths, admit_npm_package
    from cto_harness.providers.policy import load_policy
    from cto_harness.providers.registry import record_admission

    policy = load_policy(_policy_path(sc))
    sources = [_settings(Path(os.environ["CTO_HARNESS_HOME"]))] \
        if os.environ.get("CTO_HARNESS_HOME") else []
    sources.append(_settings(sc.home))
    for source in sources:
        try:
            record = choose_admission(source, policy, None)
        except Blocked:
            continue
        if Path(record.store_path).is_relative_to(home):
            return Path(record.store_path)
        entry = Path(record.store_path).parent
        copy, target = launch_copy(record, source), NpmPaths(
            _settings(home).providers_dir / "pi" / entry.name)
        link_tree(copy.tree, target.tree)
        link_tree(copy.runtime.parent, target.runtime.parent)
        shutil.copyfile(entry / "build-report.json", target.entry_dir / "build-report.json")
        record_admission(_settings(home), record.model_copy(update={
            "store_path": str(target.tree),
            "build_report": str(target.entry_dir / "build-report.json")}))
        return target.tree
    if home != sc.home:  # fetched once, into the scenario's home, then linked from there
        admit_pi(sc, sc.home)
        return admit_pi(sc, home)
    report = admit_npm_package(None, None, policy, _settings(home), progress=None)
    return Path(report.artifact.store_path)


def pi_home(sc: Scenario) -> Path:
    """The scenario's home, with pi admitted in it (once)."""
    if "pi_tree" not in sc.cache:
        sc.cache["pi_tree"] = admit_pi(sc, sc.home)
    return sc.home


def pi_run(sc: Scenario, *, home: Path | None = None, harness_root: Path | None = None,
           script: str = PASS_SCRIPT, env_changes: Mapping[str, str | None] | None = None,
           **overrides: str | None) -> RunResult:
    """A pi run on r1-string-slugify against the scripted endpoint (`env_changes` and
    `overrides` change the environment; None unsets). The planted key is in the environment:
    it must reach nothing."""
    root = harness_root or sc.harness_root
    _with_models(root)
    env = validator_environ(
        {"CTO_HARNESS_HOME": str(home or pi_home(sc)), "CTO_HARNESS_RUNS_DIR": str(sc.runs),
         "CTO_HARNESS_PI_MODEL_PROVIDER": SCRIPTED_MODEL[0],
         "CTO_HARNESS_PI_MODEL": SCRIPTED_MODEL[1],
         "CTO_HARNESS_PI_MODEL_ENDPOINT": "scripted", "CTO_HARNESS_PI_MODEL_SCRIPT": script,
         "CTO_HARNESS_PI_TIMEOUT_SECONDS": "120", "ANTHROPIC_API_KEY": PLANTED_KEY},
        {**(env_changes or {}), **overrides})
    return execute_run(CASE_ID, "pi", harness_root=root, settings=Settings.from_env(env),
                       environ=env)


def _watched(sc: Scenario) -> dict[str, Path]:
    return {"fixture": sc.case_dir, "harness providers": sc.harness_root / "providers",
            "pi store": Path(sc.cache["pi_tree"]).parent}


@dataclass(frozen=True)
class PassRun:
    result: RunResult
    before: Mapping[str, str]  # `_watched` digests taken just before the run


def pass_run(sc: Scenario) -> PassRun:
    """The scripted pass run (pi-happy), made once per scenario."""
    if "pi_pass" not in sc.cache:
        pi_home(sc)
        _with_models(sc.harness_root)
        before = {name: tree_digest(path) for name, path in _watched(sc).items()}
        sc.cache["pi_pass"] = PassRun(pi_run(sc), before)
    found = sc.cache["pi_pass"]
    assert isinstance(found, PassRun)
    return found


def _passed(result: RunResult) -> None:
    report = result.report
    expect(report.verdict == "pass" and result.exit_code == 0,
           f"the scripted pass run ended {report.verdict} "
           f"({[b.code for b in report.blockers]}, {report.verification.failures})")


def _no_planted_key(result: RunResult) -> None:
    leaks = [str(p.relative_to(result.run_dir)) for p in result.run_dir.rglob("*")
             if p.is_file() and "private" not in p.relative_to(result.run_dir).parts
             and PLANTED_KEY.encode() in p.read_bytes()]
    expect(not leaks, f"the planted key appears in {leaks}")


def _blocked(result: RunResult, code: str, marker: str | None = None) -> str:
    detail = blocked_with(result, code, marker)
    _no_planted_key(result)
    return detail


def _own_home(sc: Scenario, name: str) -> tuple[Path, Path]:
    """A home of its own with pi linked in (for a check that changes the install)."""
    home = sc.workdir / name
    return home, admit_pi(sc, home)


def _replace(path: Path, data: bytes) -> None:
    """A new file at `path` (the linked one is unlinked first: the store it came from is never
    written)."""
    mode = path.stat().st_mode
    path.unlink()
    path.write_bytes(data)
    path.chmod(mode)


# --- the checks ----------------------------------------------------------------------------------


def _command_shape(sc: Scenario) -> str:
    result = pass_run(sc).result
    _passed(result)
    report, argv = result.report, result.report.command
    prompt = (result.run_dir / "task" / "prompt.md").read_text(encoding="utf-8")
    expected = [argv[0], report.provider.executed_path, *FLAGS, "--provider",
                SCRIPTED_MODEL[0], "--model", SCRIPTED_MODEL[1], *SANDBOXING_FLAGS, prompt]
    expect(argv == expected, f"launched argv is not <bun> <entry> {' '.join(FLAGS)} --provider "
                             f"P --model M {' '.join(SANDBOXING_FLAGS)} <prompt>: {argv[:-1]}")
    run_private = result.run_dir / "private"
    expect(all(Path(a).is_relative_to(run_private) for a in argv[:2]),
           f"the runtime and entry point are not the run's own hashed copies: {argv[:2]}")
    return "exactly <bun> <entry> --print --mode json --no-session, the model, every " \
           "extension source off, the prompt; runtime and entry the run's hashed copies"


def _task_contract(sc: Scenario) -> str:

    from cto_harness.core.taskscan import outside_paths

    result = pass_run(sc).result
    prompt = (result.run_dir / "task" / "prompt.md").read_text(encoding="utf-8")
    expect(prompt.startswith("Task: "), "the prompt does not start with the task's title")
    for needle in ("slugkit/text.py", "unittest discover"):
        expect(needle in prompt, f"the prompt does not carry {needle!r}")
    found = outside_paths([prompt], result.run_dir / "workspace")
    expect(not found, f"the prompt names paths outside the workspace: {found}")
    _blocked(pi_run(sc, harness_root=sc.leaky_harness()), "task_contract_invalid")
    return "the prompt: the task, its allowed paths and test command, no outside path; an " \
           "outside path in the task blocks"


def _provider_unavailable(sc: Scenario) -> str:
    _blocked(pi_run(sc, home=sc.workdir / "home-without-pi"), "provider_unavailable",
             "provider-unavailable.txt")
    _blocked(pi_run(sc, CTO_HARNESS_PI_ADMISSION="0" * 12), "provider_unavailable",
             "provider-unavailable.txt")
    return "no admitted pi, and an admission that does not exist, both block with the marker"


def _provider_timeout(sc: Scenario) -> str:
    return timed_out(lambda: pi_run(sc, script=HANG, CTO_HARNESS_PI_TIMEOUT_SECONDS="5"), 5, 60)


def _model_gate(sc: Scenario) -> str:
    variants: dict[str, tuple[str, dict[str, str | None]]] = {
        "unset": ("model_not_admitted", {"CTO_HARNESS_PI_MODEL_PROVIDER": None,
                                         "CTO_HARNESS_PI_MODEL": None}),
        "provider only": ("model_not_admitted", {"CTO_HARNESS_PI_MODEL": None}),
        "unadmitted model": ("model_not_admitted", {"CTO_HARNESS_PI_MODEL": "not-admitted"}),
        "unadmitted base URL": ("model_not_admitted", {
            "CTO_HARNESS_PI_MODEL_ENDPOINT": "live",
            "CTO_HARNESS_PI_MODEL_BASE_URL": "http://127.0.0.1:10"}),
        "base URL beside a scripted endpoint": ("model_not_admitted", {
            "CTO_HARNESS_PI_MODEL_BASE_URL": LIVE_URL}),
        "a script set that does not exist": ("model_script_invalid", {
            "CTO_HARNESS_PI_MODEL_SCRIPT": "no-such-set"}),
        "replay without a cassette": ("model_cassette_invalid", {
            "CTO_HARNESS_PI_MODEL_ENDPOINT": "replay"}),
    }
    for label, (code, overrides) in variants.items():
        marker = "provider-model-not-admitted.txt" if code == "model_not_admitted" else None
        try:
            _blocked(pi_run(sc, env_changes=overrides), code, marker)
        except CheckFailed as exc:
            raise CheckFailed(f"{label}: {exc}") from exc
    return f"{len(variants)} model settings each blocked with their code; pi never started"


def _credentials_gate(sc: Scenario) -> str:
    _blocked(pi_run(sc, ANTHROPIC_API_KEY=None, CTO_HARNESS_PI_MODEL_ENDPOINT="live",
                    CTO_HARNESS_PI_MODEL_BASE_URL=LIVE_URL),
             "credentials_missing", "credentials-missing.txt")
    result = pass_run(sc).result
    _passed(result)
    _no_planted_key(result)
    endpoint = result.report.model.endpoint
    expect(endpoint is not None and endpoint.errors == [] and bool(endpoint.requests),
           f"the harness's endpoint refused pi's key or saw no request: {endpoint}")
    config = json.loads((result.run_dir / "backend" / "pi-models.json").read_text())
    expect(config["providers"][SCRIPTED_MODEL[0]]["apiKey"] == "ANTHROPIC_API_KEY",
           f"pi's models.json does not name the key by variable: {config}")
    return "a live model without its key blocks with the marker; on the scripted endpoint pi " \
           "is served with a per-run key and the operator's never reaches the bundle"


def _digest_gate(sc: Scenario) -> str:
    home, tree = _own_home(sc, "home-changed-install")
    target = next(p for p in (tree / "node_modules").rglob("main.js") if p.is_file())
    _replace(target, target.read_bytes() + b"\n// changed after admission\n")
    _blocked(pi_run(sc, home=home), "provider_not_admitted", "provider-not-admitted.txt")
    return "one file of the install changed after admission: not admitted, pi never started"


def _identity_gate(sc: Scenario) -> str:
    from cto_harness.providers.registry import list_admissions, record_admission

    home, tree = _own_home(sc, "home-impostor")
    (record,) = list_admissions(_settings(home), "pi")
    entry = tree / "node_modules" / "@mariozechner" / "pi-coding-agent" / record.origin["entry"]
    _replace(entry, b'console.log("an impostor: no pi here");\n')
    # The registry forged to admit it: the run-time probe must still refuse to launch it.
    forged = tree_digest(tree)
    record_admission(_settings(home), record.model_copy(update={
        "sha256": forged, "origin": {**record.origin, "entry_sha256": sha256_file(entry)}}))
    _blocked(pi_run(sc, home=home, CTO_HARNESS_PI_ADMISSION=forged), "identity_mismatch")
    return "an install whose entry point is not pi, admitted by a forged record, blocks at run start"


def _allowed_writes(sc: Scenario) -> str:
    result = pi_run(sc, script=OUTSIDE_WRITE)
    outside_write_failed(result, "README.md")
    expect(result.report.verification.status == "passed", "the fix's tests did not pass")
    return "pi's write outside the allowed paths fails the run although the tests pass"


def _verification_decides(sc: Scenario) -> str:
    result = pi_run(sc, script=WRONG_FIX)
    report = result.report
    expect(report.verdict == "fail" and result.exit_code == 1,
           f"verdict {report.verdict} (exit {result.exit_code}), expected fail")
    expect(report.verification.tests_failed >= 1, "the harness's own tests did not fail")
    outcome = report.provider_outcome
    expect(outcome.outcome == "completed" and outcome.agrees_with_verdict is False,
           f"pi's own outcome {outcome.outcome} is not recorded as a disagreement")
    _bundle_verifies(result)
    return f"pi claimed success, {report.verification.tests_failed} of the harness's tests " \
           f"failed: FAIL, the disagreement named ({outcome.note_code})"


def _same_run_baseline(sc: Scenario) -> str:
    return baseline_paired(pass_run(sc).result)


def _evidence_shape(sc: Scenario) -> str:
    return evidence_complete({"pass": pass_run(sc).result,
                              "blocked": pi_run(sc, CTO_HARNESS_PI_MODEL_SCRIPT="no-such-set")},
                             sc.workdir / "changed-bundle")


def _no_mutation(sc: Scenario) -> str:
    made = pass_run(sc)
    _passed(made.result)
    after = {name: tree_digest(path) for name, path in _watched(sc).items()}
    changed = [name for name in made.before if made.before[name] != after[name]]
    expect(not changed, f"mutated outside the run directory: {changed}")
    return "fixture, harness providers and the pi store unchanged by a run"


def _scripted_endpoint(sc: Scenario) -> str:
    result = pass_run(sc).result
    _passed(result)
    model = result.report.model
    endpoint = model.endpoint
    expect(model.endpoint_kind == "scripted", f"endpoint_kind {model.endpoint_kind}")
    expect(endpoint is not None and endpoint.started_by_harness
           and endpoint.script_set == PASS_SCRIPT,
           f"the report does not show the harness's own scripted endpoint: {endpoint}")
    assert endpoint is not None
    expect(endpoint.requests == 4, f"{endpoint.requests} model requests, the script has 4 steps")
    expect((result.run_dir / "backend" / "model-exchanges.jsonl").is_file(),
           "the endpoint's log is not in the bundle")
    outcome = result.report.provider_outcome
    expect(outcome.outcome == "completed", f"pi's own outcome {outcome.outcome}")
    return "endpoint_kind scripted, started by the harness, 4 requests logged, pi completed"


PI_CHECKS: dict[str, Check] = {
    "command_shape": _command_shape,
    "task_contract": _task_contract,
    "provider_unavailable_fail_closed": _provider_unavailable,
    "provider_timeout_fail_closed": _provider_timeout,
    "model_provider_gate_blocks": _model_gate,
    "credentials_gate_blocks": _credentials_gate,
    "digest_gate_blocks": _digest_gate,
    "identity_gate_blocks": _identity_gate,
    "allowed_writes_enforced": _allowed_writes,
    "verification_decides": _verification_decides,
    "same_run_baseline": _same_run_baseline,
    "evidence_shape": _evidence_shape,
    "no_mutation": _no_mutation,
    "scripted_endpoint": _scripted_endpoint,
}

__all__ = ["PI_CHECKS", "admit_pi", "pass_run", "pi_run"]
