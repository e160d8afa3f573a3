"""The adapter validator (DESIGN section 8): real scenarios, each proving one fail-closed path.

Every check runs the real pipeline (`execute_run`, the provider build route) in a temporary
`CTO_HARNESS_HOME` and runs directory, against stand-in providers it creates and admits there,
and a temporary copy of the harness folder whose policy admits one test model. Nothing reads
source text for a string: a check passes only if the behaviour it guards really happens.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cto_harness.core.run import RunResult, execute_run
from cto_harness.errors import CheckFailed
from cto_harness.fsutil import sha256_file, tree_digest
from cto_harness.git import commit_all
from cto_harness.settings import CREDENTIAL_VARIABLES, Settings
from cto_harness.validators.script_standin import solution_of, write_script_standin

TEST_MODEL = ("anthropic", "validator-model")
# Recognisable, fake, and long enough to be redacted: it must never appear in a bundle.
PLANTED_KEY = "sk-ant-cto-validator-planted-0123456789abcdef"
CASE_ID = "r1-string-slugify"


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str
    duration_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail,
                "duration_ms": self.duration_ms}


CHECKS: dict[str, Callable[[Scenario], str]] = {}


def check(name: str) -> Callable[[Callable[[Scenario], str]], Callable[[Scenario], str]]:
    def register(func: Callable[[Scenario], str]) -> Callable[[Scenario], str]:
        CHECKS[name] = func
        return func

    return register


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


class Scenario:
    """A temporary world for the checks: home, runs dir, harness copy, admitted stand-ins."""

    def __init__(self, harness_root: Path, workdir: Path) -> None:
        self.workdir = workdir
        self.home = workdir / "home"
        self.runs = workdir / "runs"
        self.harness_root = workdir / "harness"
        shutil.copytree(harness_root, self.harness_root, symlinks=True)
        policy = self.harness_root / "providers" / "case" / "policy.toml"
        policy.write_text(policy.read_text() + (
            f'\n[[models]]\nprovider = "{TEST_MODEL[0]}"\nmodel = "{TEST_MODEL[1]}"\n'))
        self.case_dir = self.harness_root / "evals" / "cases" / CASE_ID
        self._admitted: dict[str, Path] = {}
        # What an engine's checks make once and share (an admitted install, a pass run).
        self.cache: dict[str, Any] = {}

    def environ(self, **overrides: str | None) -> dict[str, str]:
        """A case-run environment that passes every gate; `None` removes a variable."""
        values = {
            "CTO_HARNESS_HOME": str(self.home),
            "CTO_HARNESS_RUNS_DIR": str(self.runs),
            "CTO_HARNESS_ALLOW_CASE": "1",
            "CTO_HARNESS_CASE_STAGE": "2",
            "CTO_HARNESS_CASE_MODEL_PROVIDER": TEST_MODEL[0],
            "CTO_HARNESS_CASE_MODEL": TEST_MODEL[1],
            "ANTHROPIC_API_KEY": PLANTED_KEY,
            "CTO_HARNESS_CASE_TIMEOUT_SECONDS": "60",
        }
        if "CTO_HARNESS_CASE_BIN" not in overrides:
            values["CTO_HARNESS_CASE_BIN"] = str(self.admitted("normal"))
        return validator_environ(values, overrides)

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.environ(CTO_HARNESS_CASE_BIN=None))

    def admitted(self, scenario: str) -> Path:
        """A script stand-in with `scenario`, admitted through the real admission route."""
        if scenario not in self._admitted:
            from cto_harness.providers.build import admit_prebuilt
            from cto_harness.providers.policy import default_policy_path, load_policy

            policy = load_policy(default_policy_path(self.harness_root))
            binary = write_script_standin(self.workdir / "standins" / scenario / "ca",
                                          scenario=scenario, solution=solution_of(self.case_dir))
            report = admit_prebuilt(binary, policy.source_url, policy.pin, policy,
                                    self.settings, progress=None)
            self._admitted[scenario] = Path(report.artifact.store_path)
        return self._admitted[scenario]

    def leaky_harness(self) -> Path:
        """A copy of the harness folder whose case names a path outside the workspace."""
        leaky = self.workdir / "leaky-harness"
        if not leaky.exists():
            shutil.copytree(self.harness_root, leaky, symlinks=True)
            toml = leaky / "evals" / "cases" / CASE_ID / "case.toml"
            toml.write_text(toml.read_text().replace(
                'title = "Implement slugify"', 'title = "Implement slugify like /srv/target-repo"'))
        return leaky

    def run(self, engine: str | None = "case", case_id: str = CASE_ID, *,
            harness_root: Path | None = None, **env: str | None) -> RunResult:
        """A run in this world; `env` overrides the passing environment (None: unset)."""
        return self.run_with(env, engine, case_id, harness_root=harness_root)

    def run_with(self, env: dict[str, str | None], engine: str | None = "case",
                 case_id: str = CASE_ID, *, harness_root: Path | None = None) -> RunResult:
        environ = self.environ(**env)
        return execute_run(case_id, engine, harness_root=harness_root or self.harness_root,
                           settings=Settings.from_env(environ), environ=environ)


def validator_environ(values: Mapping[str, str], overrides: Mapping[str, str | None]
                      ) -> dict[str, str]:
    """The caller's environment without any harness variable or model credential, then
    `values`, then `overrides` (`None` removes a variable)."""
    credentials = {name for names in CREDENTIAL_VARIABLES.values() for name in names}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CTO_HARNESS_") and k not in credentials}
    env |= values
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def blocked_with(result: RunResult, code: str, marker: str | None = None) -> str:
    """Assert a run blocked with `code` (and its marker) before the provider started."""
    report = result.report
    codes = [b.code for b in report.blockers]
    expect(report.verdict == "blocked", f"verdict {report.verdict}, expected blocked ({codes})")
    expect(result.exit_code == 2, f"exit code {result.exit_code}, expected 2")
    expect(codes[:1] == [code], f"blockers {codes}, expected {code} first")
    expect(not report.case_process_started, "the provider process started anyway")
    if marker is not None:
        path = result.run_dir / "backend" / marker
        expect(path.is_file() and path.read_text().strip() != "", f"marker backend/{marker} missing")
    _bundle_verifies(result)
    return f"{code}{' + ' + marker if marker else ''}, provider not started"


def _bundle_verifies(result: RunResult) -> None:
    from cto_harness.errors import BundleInvalid
    from cto_harness.evidence.verify import verify_bundle

    try:
        verify_bundle(result.run_dir, result.public_key)
    except BundleInvalid as exc:
        raise CheckFailed(f"the bundle does not verify: {exc}") from exc


def _running_with(token: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if token in cmdline and state != "Z":
            found.append(int(name))
    return found


# --- the checks (DESIGN section 8 names) -----------------------------------------------------


@check("fake_default_lane")
def _fake_default_lane(sc: Scenario) -> str:
    from cto_harness import engines

    expect(engines.DEFAULT_ENGINE == "fake",
           f"the default engine is {engines.DEFAULT_ENGINE!r}, not fake")
    result = sc.run(engine=None)  # what `run` does without --engine
    expect(result.report.engine == "fake", f"a run without an engine ran {result.report.engine}")
    expect(result.report.verdict == "pass", f"fake lane verdict {result.report.verdict}")
    _bundle_verifies(result)
    return f"default engine fake; {CASE_ID} passes ({result.report.timing.duration_ms} ms)"


@check("command_shape")
def _command_shape(sc: Scenario) -> str:
    result = sc.run()
    argv = result.report.command
    expect(len(argv) == 6 and argv[1:3] == ["run", "--task"] and argv[4:] == ["--mode", "unattended"],
           f"launched argv is not `<ca> run --task <file> --mode unattended`: {argv}")
    expect(argv[3].endswith(".task.json"), f"the task argument is not a .task.json file: {argv[3]}")
    expect(result.report.verdict == "pass", f"the admitted stand-in run ended {result.report.verdict}")
    expect(result.report.provider.executed_path == argv[0],
           "the launched binary is not the hashed private copy")
    from cto_harness.engines.case.command import check_case_argv  # the adapter's own refusal

    for bad in ([*argv, "--model", "x"], argv[:5], [argv[0], "run", "--mode", "unattended",
                                                    "--task", argv[3]],
                [argv[0], "--version"]):
        try:
            check_case_argv(bad)
        except Exception:
            continue
        raise CheckFailed(f"the adapter accepted another command shape: {bad}")
    return "exactly <ca> run --task <file> --mode unattended; 4 other shapes refused"


@check("task_contract")
def _task_contract(sc: Scenario) -> str:
    result = sc.run()
    task_files = sorted(p.name for p in (result.run_dir / "task").iterdir())
    expect(any(n.endswith(".task.json") for n in task_files), f"no .task.json in task/: {task_files}")
    task = json.loads(next((result.run_dir / "task").glob("*.task.json")).read_text())
    expect(task.get("status") == "active" and task.get("mode") == "unattended",
           f"task status/mode are {task.get('status')}/{task.get('mode')}")
    _validate_against_shared(task)
    leaky = sc.leaky_harness()
    blocked = sc.run(harness_root=leaky)
    blocked_with(blocked, "task_contract_invalid")
    return "task file valid (status active, mode unattended); an outside path blocks"


def _validate_against_shared(task: dict[str, Any]) -> None:
    schema_path = Path(__file__).resolve().parents[3].parent / "shared" / "case-task.schema.json"
    if not schema_path.is_file():
        return
    try:
        import jsonschema
    except ImportError:
        return
    try:
        jsonschema.validate(task, json.loads(schema_path.read_text()))
    except jsonschema.ValidationError as exc:
        raise CheckFailed(f"the task file breaks Case's task schema: {exc.message}") from exc


@check("provider_unavailable_fail_closed")
def _provider_unavailable(sc: Scenario) -> str:
    blocked_with(sc.run(CTO_HARNESS_CASE_BIN=None), "provider_unavailable",
                 "provider-unavailable.txt")
    blocked_with(sc.run(CTO_HARNESS_CASE_BIN=str(sc.workdir / "no-such-ca")),
                 "provider_unavailable", "provider-unavailable.txt")
    return "unset and missing CTO_HARNESS_CASE_BIN both block with the marker"


def timed_out(run: Callable[[], RunResult], limit: int, slack: int) -> str:
    """`run` (a hanging provider under a `limit`-second limit) must block `provider_timeout`
    within `limit + slack` seconds, with its marker, its whole tree killed, nothing left."""
    started = time.monotonic()
    result = run()
    elapsed = time.monotonic() - started
    report = result.report
    codes = [b.code for b in report.blockers]
    expect(report.verdict == "blocked" and codes[:1] == ["provider_timeout"],
           f"verdict {report.verdict} with {codes}, expected blocked provider_timeout")
    expect(report.provider_process_started, "the hanging provider never started")
    expect((result.run_dir / "backend" / "provider-timeout.txt").is_file(),
           "marker backend/provider-timeout.txt missing")
    expect(elapsed < limit + slack, f"the run took {elapsed:.1f}s for a {limit}s limit")
    left = _running_with(str(result.run_dir))
    expect(not left, f"processes still running after the timeout: {left}")
    expect(report.process.tree_clean, "the runner did not see a clean tree after the kill")
    _bundle_verifies(result)
    return (f"killed after {limit}s limit ({len(report.process.killed_on_timeout)} processes, "
            f"detached child included); nothing left running")


@check("provider_timeout_fail_closed")
def _provider_timeout(sc: Scenario) -> str:
    return timed_out(lambda: sc.run(CTO_HARNESS_CASE_BIN=str(sc.admitted("hang")),
                                    CTO_HARNESS_CASE_TIMEOUT_SECONDS="2"), 2, 20)


@check("model_provider_gate_blocks")
def _model_gate(sc: Scenario) -> str:
    variants: dict[str, dict[str, str | None]] = {
        "unset": {"CTO_HARNESS_CASE_MODEL_PROVIDER": None, "CTO_HARNESS_CASE_MODEL": None},
        "provider only": {"CTO_HARNESS_CASE_MODEL": None},
        "model only": {"CTO_HARNESS_CASE_MODEL_PROVIDER": None},
        "unadmitted": {"CTO_HARNESS_CASE_MODEL": "not-an-admitted-model"},
        "unadmitted base URL": {"CTO_HARNESS_CASE_MODEL_BASE_URL": "http://127.0.0.1:9/v1"},
    }
    for label, overrides in variants.items():
        try:
            blocked_with(sc.run_with(overrides), "model_not_admitted",
                         "provider-model-not-admitted.txt")
        except CheckFailed as exc:
            raise CheckFailed(f"{label}: {exc}") from exc
    return f"{len(variants)} model settings each blocked with the marker; provider never started"


@check("credentials_gate_blocks")
def _credentials_gate(sc: Scenario) -> str:
    blocked_with(sc.run(ANTHROPIC_API_KEY=None), "credentials_missing", "credentials-missing.txt")
    result = sc.run()
    leaks = [str(p.relative_to(result.run_dir)) for p in result.run_dir.rglob("*")
             if p.is_file() and "workspace" not in p.relative_to(result.run_dir).parts
             and PLANTED_KEY.encode() in p.read_bytes()]
    expect(not leaks, f"the planted key appears in: {leaks}")
    return "missing key blocks with the marker; a present key never reaches the bundle"


def _copy_of_admitted(sc: Scenario, folder: str, mode: int) -> Path:
    copy = sc.workdir / folder / "ca"
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(sc.admitted("normal"), copy)
    copy.chmod(mode)
    return copy


@check("digest_gate_blocks")
def _digest_gate(sc: Scenario) -> str:
    tampered = _copy_of_admitted(sc, "tampered", 0o755)
    with tampered.open("a") as handle:
        handle.write("# one more line\n")
    blocked_with(sc.run(CTO_HARNESS_CASE_BIN=str(tampered)), "provider_not_admitted",
                 "provider-not-admitted.txt")
    return "a binary changed after admission is not admitted"


@check("identity_gate_blocks")
def _identity_gate(sc: Scenario) -> str:
    from cto_harness.errors import Blocked
    from cto_harness.providers.build import admit_prebuilt
    from cto_harness.providers.policy import default_policy_path, load_policy
    from cto_harness.providers.registry import AdmissionRecord, list_admissions, record_admission

    policy = load_policy(default_policy_path(sc.harness_root))
    sc.admitted("normal")
    impostor = write_script_standin(sc.workdir / "impostor" / "ca", scenario="no-markers")
    before = [r.sha256 for r in list_admissions(sc.settings)]
    try:
        admit_prebuilt(impostor, policy.source_url, policy.pin, policy, sc.settings,
                       progress=None)
    except Blocked as exc:
        expect(exc.code == "identity_mismatch", f"admission refused with {exc.code}")
    else:
        raise CheckFailed("the admission route admitted a binary without Case's help markers")
    expect([r.sha256 for r in list_admissions(sc.settings)] == before, "the registry changed")
    # Forge a registry entry for it: the run-time probe must still refuse to launch it.
    normal = next(r for r in list_admissions(sc.settings) if r.status == "admitted")
    record_admission(sc.settings, AdmissionRecord(**{
        **normal.model_dump(), "sha256": sha256_file(impostor), "store_path": str(impostor)}))
    blocked_with(sc.run(CTO_HARNESS_CASE_BIN=str(impostor)), "identity_mismatch")
    return "admission refuses it; a forged admission still blocks at run start"


@check("non_executable_blocks")
def _non_executable(sc: Scenario) -> str:
    copy = _copy_of_admitted(sc, "noexec", 0o644)
    blocked_with(sc.run(CTO_HARNESS_CASE_BIN=str(copy)), "not_executable")
    return "a non-executable provider file blocks"


def _tiny_source(sc: Scenario) -> Path:
    source = sc.workdir / "tiny-source"
    if not source.exists():
        source.mkdir()
        (source / "package.json").write_text(json.dumps(
            {"name": "case", "private": True, "bin": {"ca": "dist/ca"},
             "scripts": {"build:binary": "true"}}))
        commit_all(source, "tiny", origin="https://github.com/workos/case.git")
    return source


def _build_blocks(sc: Scenario, code: str, *, commit: str | None, path: str | None,
                  policy_path: Path | None = None) -> str:
    from cto_harness.errors import Blocked
    from cto_harness.providers.build import build_provider
    from cto_harness.providers.policy import default_policy_path, load_policy
    from cto_harness.providers.registry import registry_path

    source = _tiny_source(sc)
    before_tree = tree_digest(source)
    registry = registry_path(sc.settings)
    before_registry = registry.read_bytes() if registry.exists() else None
    builds = sc.home / "builds"
    builds_before = sorted(builds.rglob("*")) if builds.exists() else []
    environ = dict(os.environ)
    if path is not None:
        environ["PATH"] = path
    try:
        build_provider(str(source), commit,
                       load_policy(policy_path or default_policy_path(sc.harness_root)),
                       sc.settings, progress=None, environ=environ)
    except Blocked as exc:
        expect(exc.code == code, f"the build blocked with {exc.code}, expected {code}")
    else:
        raise CheckFailed(f"the build went through; expected {code}")
    expect(tree_digest(source) == before_tree, "the source checkout changed")
    expect((registry.read_bytes() if registry.exists() else None) == before_registry,
           "the admission registry changed")
    return f"{code}; registry and checkout unchanged" + (
        "; nothing cloned" if builds_before == (sorted(builds.rglob("*")) if builds.exists()
                                                 else []) else "")


@check("source_commit_gate_blocks")
def _source_commit_gate(sc: Scenario) -> str:
    # A commit the policy does not record is refused before anything is cloned...
    unrecorded = _build_blocks(sc, "source_commit_mismatch", commit="0" * 40, path=None)
    expect("nothing cloned" in unrecorded, "an unrecorded pin was cloned before it was refused")
    # ...and a recorded one must still be what the source checks out.
    policy = sc.harness_root / "providers" / "case" / "policy.toml"
    recorded = sc.workdir / "policy-recording-1111.toml"
    recorded.write_text(policy.read_text() + '\n[[accepted_pins]]\ncommit = "' + "1" * 40
                        + '"\nreason = "validator: a recorded pin the source does not have"\n')
    detail = _build_blocks(sc, "source_commit_mismatch", commit="1" * 40, path=None,
                           policy_path=recorded)
    return f"unrecorded pin refused before cloning; a recorded pin not in the source: {detail}"


@check("bun_missing_blocks")
def _bun_missing(sc: Scenario) -> str:
    bare = sc.workdir / "bin-without-bun"
    bare.mkdir(exist_ok=True)
    for tool in ("git", "node", "sh", "env"):
        if (found := shutil.which(tool)) and not (bare / tool).exists():
            (bare / tool).symlink_to(found)
    detail = _build_blocks(sc, "bun_missing", commit=None, path=str(bare))
    expect("nothing cloned" in detail, "something was cloned before the Bun check")
    return detail


@check("allowed_writes_enforced")
def _allowed_writes(sc: Scenario) -> str:
    case_dir = sc.harness_root / "evals" / "cases" / "validator-outside-write"
    if not case_dir.exists():
        shutil.copytree(sc.case_dir, case_dir)
        toml = case_dir / "case.toml"
        toml.write_text(toml.read_text().replace(f'id = "{CASE_ID}"', 'id = "validator-outside-write"'))
        (case_dir / "fake" / "solution" / "README.md").write_text("rewritten outside the allowed paths\n")
    outside_write_failed(sc.run(engine="fake", case_id="validator-outside-write"), "README.md")
    return "a write outside the allowed paths fails the run (tests passing or not)"


def outside_write_failed(result: RunResult, path: str) -> None:
    """The run wrote `path`, outside the allowed paths: it fails, and `path` is flagged."""
    report = result.report
    expect(report.verdict == "fail", f"verdict {report.verdict}, expected fail")
    expect(report.allowed_writes_passed is False, "allowed_writes_passed is not false")
    expect(any(c.path == path and not c.allowed for c in report.changed_files),
           "the outside write is not flagged in changed_files")
    _bundle_verifies(result)


@check("same_run_baseline")
def _same_run_baseline(sc: Scenario) -> str:
    return baseline_paired(sc.run())


def baseline_paired(result: RunResult) -> str:
    """The run's same-run fake baseline passed, with the same evidence shape, in `baseline/`."""
    baseline = result.report.baseline
    expect(baseline is not None, "no baseline comparison in the report")
    assert baseline is not None
    expect(baseline.verdict == "pass", f"baseline verdict {baseline.verdict}")
    expect(baseline.evidence_shape_equal is True, f"evidence shapes differ: {baseline.notes}")
    expect((result.run_dir / "baseline" / "report.json").is_file(), "no baseline/ bundle")
    base = json.loads((result.run_dir / "baseline" / "report.json").read_text())
    expect(base["nonce"] == result.report.nonce and base["engine"] == "fake",
           "baseline/ is not this run's fake baseline")
    _bundle_verifies(result)
    return f"baseline {baseline.verdict}, same shape, changed {baseline.changed_files}"


@check("evidence_shape")
def _evidence_shape(sc: Scenario) -> str:
    # Its blocked scenario uses a gate no other check relies on, so checks fail independently.
    return evidence_complete({"pass": sc.run(), "blocked": sc.run(CTO_HARNESS_ALLOW_CASE=None)},
                             sc.workdir / "changed-bundle")


def evidence_complete(outcomes: dict[str, RunResult], scratch: Path) -> str:
    """Each run ended as its label says, with every required file and a verifying bundle; a
    copy of the pass bundle (at `scratch`) with one byte changed no longer verifies."""
    from cto_harness.errors import BundleInvalid
    from cto_harness.evidence.bundle import REQUIRED_FILES
    from cto_harness.evidence.verify import verify_bundle

    for label, result in outcomes.items():
        expect(result.report.verdict == label, f"the {label} scenario ended {result.report.verdict}")
        missing = [f for f in REQUIRED_FILES if not (result.run_dir / f).is_file()]
        expect(not missing, f"{label} bundle lacks {missing}")
        _bundle_verifies(result)
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(outcomes["pass"].run_dir, scratch, symlinks=True,
                    ignore=shutil.ignore_patterns("workspace", "private"))
    target = scratch / "events.normalized.jsonl"
    data = bytearray(target.read_bytes())
    data[-2] ^= 0x01
    target.write_bytes(bytes(data))
    try:
        verify_bundle(scratch, outcomes["pass"].public_key)
    except BundleInvalid:
        pass
    else:
        raise CheckFailed("a bundle with one byte changed still verifies")
    return "pass and blocked bundles complete and verifying; one changed byte is caught"


@check("no_mutation")
def _no_mutation(sc: Scenario) -> str:
    watched = {
        "fixture": sc.case_dir,
        "harness": sc.harness_root / "providers",
        "provider store": sc.admitted("normal").parent,
    }
    before = {name: tree_digest(path) for name, path in watched.items()}
    outside = sc.workdir / "outside-sentinel"
    outside.mkdir(exist_ok=True)
    (outside / "keep.txt").write_text("unchanged\n")
    before["sentinel"] = tree_digest(outside)
    result = sc.run()
    expect(result.report.verdict == "pass", f"run ended {result.report.verdict}")
    after = {name: tree_digest(path) for name, path in watched.items()}
    after["sentinel"] = tree_digest(outside)
    changed = [name for name in before if before[name] != after[name]]
    expect(not changed, f"mutated outside the run directory: {changed}")
    return "fixture, harness, provider store and an outside folder unchanged by a run"


def run_checks(harness_root: Path, names: list[str] | None = None,
               checks: dict[str, Callable[[Scenario], str]] | None = None) -> list[CheckResult]:
    checks = CHECKS if checks is None else checks
    names = names or list(checks)
    unknown = [n for n in names if n not in checks]
    if unknown:
        raise ValueError(f"unknown checks: {', '.join(unknown)}")
    results = []
    with _scratch() as workdir:
        scenario = Scenario(harness_root, workdir)
        for name in names:
            started = time.monotonic()
            try:
                detail, passed = checks[name](scenario), True
            except CheckFailed as exc:
                detail, passed = str(exc), False
            except Exception as exc:
                detail, passed = f"{type(exc).__name__}: {exc}", False
            results.append(CheckResult(name, passed, detail,
                                       int((time.monotonic() - started) * 1000)))
    return results


@contextmanager
def _scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cto-adapter-validator-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
