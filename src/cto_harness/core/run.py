"""One Stage 2 run (DESIGN section 6), from gates to a sealed bundle. Every outcome, blocked,
failed, errored or interrupted, ends in a complete bundle: the `finally` below always seals one."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cto_harness import REPORT_SCHEMA_VERSION, __version__
from cto_harness.contracts import (
    BaselineComparison,
    Blocker,
    CaseSpec,
    ChangedFile,
    Freshness,
    IsolationInfo,
    NoTargetInspection,
    ProcessSummary,
    ProviderInfo,
    Report,
    Timing,
    VerificationResult,
)
from cto_harness.core.events import EventLog, iso, utc_now
from cto_harness.core.fixtures import FixtureCase, case_directory, load_case
from cto_harness.core.globs import matches_any
from cto_harness.core.taskscan import scan_contract
from cto_harness.core.testrun import run_verification
from cto_harness.core.workspace import Snapshot, copy_tree, init_workspace_repo, split_changes
from cto_harness.engines import RunContext, get_engine
from cto_harness.engines.base import Engine, ProviderOutcome
from cto_harness.errors import (
    EXIT_BLOCKED,
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_PASS,
    Blocked,
    Interrupted,
    UsageError,
)
from cto_harness.evidence.bundle import redact_files, render_markdown, write_report_and_seal
from cto_harness.evidence.signing import sign_bundle
from cto_harness.fsutil import atomic_write_jsonl, atomic_write_text, tree_digest
from cto_harness.sandbox.guard import Watch, check_disk
from cto_harness.sandbox.isolation import Sandbox
from cto_harness.sandbox.process import ProcessResult, run_process
from cto_harness.settings import Settings, secret_values

EXIT_CODES = {"pass": EXIT_PASS, "fail": EXIT_FAIL, "blocked": EXIT_BLOCKED, "error": EXIT_ERROR}


@dataclass
class RunResult:
    report: Report
    run_dir: Path
    # The public half of the key that signed this bundle (for `verify_bundle(run_dir, key)`).
    public_key: Path | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.report.verdict]


@dataclass
class _State:
    """What the run has learned so far; the report is built from it whatever happened."""

    blockers: list[Blocker] = field(default_factory=list)
    error: str | None = None
    process: ProcessResult | None = None
    command: list[str] = field(default_factory=list)
    changes: list[ChangedFile] = field(default_factory=list)
    bookkeeping: list[ChangedFile] = field(default_factory=list)
    outcome: ProviderOutcome = field(default_factory=ProviderOutcome)
    verification: VerificationResult = field(default_factory=VerificationResult)
    baseline: BaselineComparison | None = None
    baseline_ms: int | None = None
    fixture_digest: str | None = None
    workspace_after: str | None = None
    task_scan: dict[str, object] = field(default_factory=dict)
    patch: bytes = b""
    sandbox: Sandbox | None = None


def new_run_dir(runs_dir: Path, case_id: str, started: datetime) -> Path:
    runs_dir.mkdir(parents=True, exist_ok=True)
    base = f"{started.strftime('%Y%m%dT%H%M%SZ')}-{case_id}-{os.getpid()}"
    for attempt in range(1000):
        candidate = runs_dir / (base if attempt == 0 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise UsageError(f"cannot create a run directory under {runs_dir}")


def execute_run(
    case_id: str,
    engine_name: str = "fake",
    *,
    harness_root: Path,
    settings: Settings | None = None,
    environ: Mapping[str, str] | None = None,
    run_dir: Path | None = None,
    nonce: str | None = None,
    run_id: str | None = None,
) -> RunResult:
    """Run one case; usage errors raise before anything is written, all else ends in a bundle."""
    environ = dict(os.environ if environ is None else environ)
    settings = settings or Settings.from_env(environ)
    case_dir = case_directory(harness_root, case_id)
    engine = get_engine(engine_name)
    started = utc_now()
    if run_dir is None:
        run_dir = new_run_dir(settings.runs_dir, case_id, started)
    else:
        run_dir.mkdir(parents=True, exist_ok=False)
    run_id = run_id or f"{started.strftime('%Y%m%dT%H%M%SZ')}-{case_id}-{secrets.token_hex(4)}"
    nonce = nonce or secrets.token_hex(16)
    events = EventLog(run_id, nonce)
    state = _State()
    ctx: RunContext | None = None
    try:
        events.emit("run.started", case_id=case_id, engine=engine.name)
        case = None
        try:
            with events.span("task.load"):
                case = load_case(case_dir)
        finally:
            # The context exists even when the case is malformed, so the bundle can be written.
            ctx = _context(run_id, nonce, run_dir, case, case_dir, settings, harness_root,
                           environ, events)
        _run_stages(engine, ctx, state)
    except Blocked as blocked:
        state.blockers.append(Blocker(code=blocked.code, message=blocked.message))
        events.emit("gate.blocked", code=blocked.code, message=blocked.message)
        if blocked.marker:
            _marker(run_dir, blocked.marker, blocked.message)
    except (Interrupted, KeyboardInterrupt):
        state.error = "interrupted by a signal before the run finished"
        state.blockers.append(Blocker(code="interrupted", message=state.error))
        events.emit("run.interrupted")
    except UsageError:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    except Exception as exc:  # a harness fault: still a bundle, verdict error
        state.error = f"{type(exc).__name__}: {exc}"
        events.emit("run.error", error=state.error)
    assert ctx is not None
    if state.sandbox is not None:
        state.sandbox.close()  # network log, last sweep, files and uid back; never raises
    # A second signal must not cut the sealing short: hold signals until the bundle is whole.
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        report = _seal(engine, ctx, state, started)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return RunResult(report=report, run_dir=run_dir,
                     public_key=ctx.settings.keys_dir / "evidence-ed25519.pub")


def _context(
    run_id: str, nonce: str, run_dir: Path, case: FixtureCase | None, case_dir: Path,
    settings: Settings, harness_root: Path, environ: Mapping[str, str], events: EventLog,
) -> RunContext:
    if case is None:
        # A placeholder so that the blocked bundle can still be written for a malformed case.
        case = FixtureCase(
            spec=CaseSpec.model_construct(id=case_dir.name, title="", task="", allowed_paths=[]),
            directory=case_dir,
        )
    for sub in ("backend", "task", "private"):
        (run_dir / sub).mkdir(exist_ok=True)
    return RunContext(run_id=run_id, nonce=nonce, run_dir=run_dir, case=case, settings=settings,
                      harness_root=harness_root, environ=environ, events=events)


def _marker(run_dir: Path, name: str, message: str) -> None:
    atomic_write_text(run_dir / "backend" / name, message.replace("\n", " ") + "\n")


def _run_stages(engine: Engine, ctx: RunContext, state: _State) -> None:
    events = ctx.events
    case = ctx.case
    with events.span("isolation.probe") as attrs:
        state.sandbox = Sandbox.for_run(ctx)  # Blocked sandbox_user_unavailable
        attrs["tier"] = state.sandbox.tier
        ctx.network_isolated = state.sandbox.network_isolated
    events.emit("isolation.selected", tier=state.sandbox.tier, reason=state.sandbox.reason)
    with events.span("gates") as attrs:
        state.task_scan = scan_contract(case.spec, ctx.workspace,
                                        targets=ctx.settings.target_repositories)
        events.emit("gate.checked", gate="task_contract", passed=state.task_scan["passed"])
        if not state.task_scan["passed"]:
            raise Blocked(
                "task_contract_invalid",
                f"the task contract names paths outside the workspace: "
                f"{', '.join(state.task_scan['outside_paths'])}",  # type: ignore[arg-type]
            )
        engine.admit(ctx)
        attrs["admission"] = ctx.admission_status
        events.emit("gate.checked", gate="provider_admission", passed=True,
                    sha256=ctx.provider.sha256)

    with events.span("workspace.prepare"):
        state.fixture_digest = tree_digest(case.repo)
        copy_tree(case.repo, ctx.workspace)
        init_workspace_repo(ctx.workspace, ctx.private / "remote.git", ctx.private / "git-home")
        snapshot = Snapshot(ctx.workspace, ctx.private / "snapshot.git", ctx.private / "git-home")
        snapshot.take_before()
        events.emit("workspace.prepared", fixture_digest=state.fixture_digest)

    launch = engine.prepare(ctx)
    if launch.file_size_limit is None:
        launch.file_size_limit = ctx.settings.workspace_limit_bytes
    state.command = list(launch.argv)
    with events.span("isolation.canary") as attrs:
        confined = state.sandbox.confine(launch)  # Blocked("isolation_breach") if it leaks
        attrs["duration_ms"] = state.sandbox.canary_result.get("duration_ms")
    events.emit("isolation.canary.passed", tier=state.sandbox.tier,
                observed=state.sandbox.canary_result.get("observed"))
    for name in ("stdout.log", "stderr.log"):
        (ctx.backend / name).touch()
    watch = Watch.start(ctx.run_dir, [*ctx.settings.target_repositories, ctx.harness_root,
                                      ctx.settings.home], frozenset({ctx.settings.runs_dir}))
    events.emit("provider.process.starting", argv=launch.argv)
    start = iso(utc_now())
    try:
        state.process = run_process(
            confined.argv, cwd=launch.cwd, env=launch.env,
            stdout_path=ctx.backend / "stdout.log", stderr_path=ctx.backend / "stderr.log",
            timeout_seconds=launch.timeout_seconds, file_size_limit=launch.file_size_limit,
            on_start=lambda pid: events.emit("provider.process.started", pid=pid),
        )
    finally:
        process_span = events.add_span("provider.process", start, iso(utc_now()),
                                       attributes={"argv": " ".join(launch.argv)})
    result = state.process
    # Nothing of the provider may run on, and its files are the harness's again, before the
    # harness reads anything it wrote.
    not_contained = state.sandbox.release(result)
    events.emit("provider.process.exited", exit_code=result.exit_code, timed_out=result.timed_out,
                leftover_processes=len(result.leftover_processes))
    with events.span("guards"):
        try:
            if not_contained is not None:
                raise not_contained
            # Before the harness writes anything more into the bundle folder.
            watch.check()  # Blocked bundle_tampered / outside_write_detected
            check_disk(state.sandbox.provider_writable(), ctx.settings.workspace_limit_bytes)
        finally:
            if result.timed_out:
                message = (f"the provider ran past its {launch.timeout_seconds:g}s limit; its "
                           f"whole process tree ({len(result.killed_on_timeout)} processes) "
                           f"was killed")
                _marker(ctx.run_dir, "provider-timeout.txt", message)
                state.blockers.append(Blocker(code="provider_timeout", message=message))

    with events.span("workspace.diff"):
        snapshot.take_after()
        state.changes, state.bookkeeping = split_changes(snapshot.changes(),
                                                         case.spec.allowed_paths)
        state.patch = snapshot.patch()
        state.workspace_after = snapshot.digest()  # = tree_digest(workspace, exclude .git)
    events.emit("workspace.diffed", changed=len(state.changes), bookkeeping=len(state.bookkeeping))

    state.outcome = engine.collect(ctx, result)
    for ts, type_, data in state.outcome.events:
        events.emit(type_, source="provider", ts=ts, **data)
    _provider_spans(events, state.outcome.spans, process_span)
    if state.blockers:
        return

    with events.span("verification") as attrs:
        events.emit("verification.started", command=case.spec.verification.command)
        area = ctx.private / "verification"
        area.mkdir(exist_ok=True)
        state.verification = run_verification(
            case, ctx.workspace, area / "repo", ctx.run_dir / "test.log", area / "home",
            wrap=state.sandbox.verification_prefix(area, area / "repo"),
        )
        attrs["status"] = state.verification.status
    events.emit("verification.finished", status=state.verification.status,
                tests_ran=state.verification.tests_ran, exit_code=state.verification.exit_code)
    state.sandbox.finish()  # Blocked containment_failed: something of the sandbox uid lives on

    if engine.needs_baseline:
        _baseline(ctx, state)


def _provider_spans(events: EventLog, spans: list[dict[str, object]], parent: str) -> None:
    ids: dict[object, str] = {}
    for span in spans:
        parent_id = ids.get(span.get("parent_key"), parent)
        ids[span["key"]] = events.add_span(
            str(span["name"]), str(span["start"]), str(span["end"]), parent=parent_id,
            status=str(span.get("status", "ok")),
            attributes=dict(span.get("attributes", {})),  # type: ignore[call-overload]
        )


def _baseline(ctx: RunContext, state: _State) -> None:
    """Run the fake engine on its own copy of the same fixture, as a bundle inside this one."""
    start = utc_now()
    baseline = execute_run(
        ctx.case.spec.id, "fake", harness_root=ctx.harness_root, settings=ctx.settings,
        environ=ctx.environ, run_dir=ctx.run_dir / "baseline", nonce=ctx.nonce,
        run_id=f"{ctx.run_id}.baseline",
    )
    state.baseline_ms = int((utc_now() - start).total_seconds() * 1000)
    b = baseline.report
    base_files = sorted(c.path for c in b.changed_files)
    case_files = sorted(c.path for c in state.changes)
    notes = _shape_differences(b, state)
    state.baseline = BaselineComparison(
        run_id=b.run_id, verdict=b.verdict, changed_files=base_files, case_changed_files=case_files,
        evidence_shape_equal=not notes, notes=notes,
        outcome_equal=(b.verdict == "pass") == (state.verification.status == "passed"),
    )
    ctx.events.emit("baseline.finished", verdict=b.verdict)
    if b.verdict != "pass":
        raise Blocked("baseline_failed",
                      f"the same-run fake baseline ended {b.verdict}: the fixture is unsound")


def _shape_differences(baseline: Report, state: _State) -> list[str]:
    """Evidence shape: the same kinds of evidence exist for both runs, so they can be compared."""
    notes = []
    if baseline.verification.command != state.verification.command:
        notes.append("verification commands differ")
    if baseline.verification.tests_ran != state.verification.tests_ran:
        notes.append(f"tests ran: baseline {baseline.verification.tests_ran}, "
                     f"provider {state.verification.tests_ran}")
    if bool(baseline.changed_files) != bool(state.changes):
        notes.append("one run changed source files and the other did not")
    return notes


def _pass_conditions(engine: Engine, ctx: RunContext, state: _State) -> dict[str, bool]:
    process = state.process
    conditions = {
        "provider_process_started": process is not None,
        "provider_exited_zero": process is not None and process.exit_code == 0,
        "no_processes_left_running": process is not None and not process.leftover_processes,
        "allowed_writes_passed": all(c.allowed for c in state.changes),
        "expected_changes_present": all(
            any(matches_any(c.path, [pattern]) for c in state.changes)
            for pattern in ctx.case.spec.evidence.changed_paths
        ),
        "harness_verification_passed": state.verification.status == "passed",
        "no_forbidden_action_attempted": not state.outcome.forbidden,
    }
    if engine.needs_baseline:
        conditions["baseline_passed_same_shape"] = bool(
            state.baseline and state.baseline.verdict == "pass"
            and state.baseline.evidence_shape_equal
        )
    return conditions


def _seal(engine: Engine, ctx: RunContext, state: _State, started: datetime) -> Report:
    """Write every artifact (placeholders where a stage never ran), then report, manifest,
    freshness. Runs whatever happened before it."""
    run_dir = ctx.run_dir
    conditions: dict[str, bool] = {}
    if state.error:
        verdict = "error"
    elif state.blockers:
        verdict = "blocked"
    else:
        conditions = _pass_conditions(engine, ctx, state)
        verdict = "pass" if all(conditions.values()) else "fail"
    if state.error and not any(b.code == "interrupted" for b in state.blockers):
        state.blockers.append(Blocker(code="harness_error", message=state.error))

    for name in ("stdout.log", "stderr.log"):
        (run_dir / "backend" / name).touch()
    if not (run_dir / "test.log").exists():
        reason = ", ".join(b.code for b in state.blockers) or state.error or "not reached"
        atomic_write_text(run_dir / "test.log", f"[cto-harness] verification not run: {reason}\n")
    atomic_write_text(run_dir / "patch.diff", state.patch.decode("utf-8", "surrogateescape"))
    if not ctx.task_files:
        atomic_write_text(run_dir / "task" / "NOT-GIVEN.txt",
                          "No task file was given to the provider: the run stopped before "
                          "launch.\n")
    process = state.process
    finished = utc_now()
    ctx.events.emit("run.finished", verdict=verdict)
    ctx.events.close_root(iso(started), iso(finished), "ok" if verdict == "pass" else "error",
                          verdict=verdict, case_id=ctx.case.spec.id, engine=engine.name)
    atomic_write_jsonl(run_dir / "events.normalized.jsonl",
                       (e.model_dump(mode="json") for e in ctx.events.events))
    atomic_write_jsonl(run_dir / "trace.jsonl",
                       (s.model_dump(mode="json") for s in ctx.events.spans))

    secrets_ = secret_values(ctx.environ)
    text_files = [p for p in run_dir.rglob("*") if p.is_file()
                  and p.relative_to(run_dir).parts[0] not in ("workspace", "private", "baseline")]
    redact_files(text_files, secrets_)

    report = Report(
        schema_version=REPORT_SCHEMA_VERSION,
        harness_version=__version__,
        run_id=ctx.run_id,
        nonce=ctx.nonce,
        run_dir=str(run_dir.resolve()),
        case_id=ctx.case.spec.id,
        engine=engine.name,
        stage=engine.stage(ctx.settings),
        verdict=verdict,  # type: ignore[arg-type]
        blockers=state.blockers,
        source_admission_status=ctx.admission_status,
        case_process_started=process is not None,
        backend_exit_code=process.exit_code if process else None,
        allowed_writes_passed=process is not None and all(c.allowed for c in state.changes),
        changed_files=state.changes,
        bookkeeping_changes=state.bookkeeping,
        command=state.command,
        provider=ctx.provider if ctx.provider.name != "unknown" else ProviderInfo(name=engine.name),
        model=ctx.model,
        timing=Timing(
            started_at=iso(started), finished_at=iso(finished),
            duration_ms=int((finished - started).total_seconds() * 1000),
            provider_ms=process.duration_ms if process else None,
            verification_ms=state.verification.duration_ms,
            baseline_ms=state.baseline_ms,
        ),
        process=_process_summary(process),
        verification=state.verification,
        forbidden_actions_attempted=list(state.outcome.forbidden),
        provider_claims=state.outcome.claims,
        baseline=state.baseline,
        isolation=state.sandbox.info() if state.sandbox else IsolationInfo(
            reason="the run stopped before the isolation was chosen"),
        no_target_inspection=NoTargetInspection(
            task_scan=state.task_scan,
            hidden_paths=state.sandbox.info().hidden_paths if state.sandbox else [],
            canary=state.sandbox.canary_result if state.sandbox else {},
        ),
        pass_conditions=conditions,
        freshness=Freshness(
            run_id=ctx.run_id, nonce=ctx.nonce, started_at=iso(started), finished_at=iso(finished),
            fixture_digest=state.fixture_digest, workspace_digest_before=state.fixture_digest,
            workspace_digest_after=state.workspace_after, provider_sha256=ctx.provider.sha256,
        ),
    )
    atomic_write_text(run_dir / "report.md", render_markdown(report))
    redact_files([run_dir / "report.md"], secrets_)
    shutil.rmtree(ctx.private, ignore_errors=True)
    report = write_report_and_seal(run_dir, report, secrets=secrets_)
    # Last: the signature over the manifest and freshness record (evidence.dsse.json).
    sign_bundle(run_dir, ctx.settings.keys_dir, {
        "run_id": report.run_id, "nonce": report.nonce, "case_id": report.case_id,
        "engine": report.engine, "verdict": report.verdict, "isolation": report.isolation.tier,
    })
    return report


def _process_summary(process: ProcessResult | None) -> ProcessSummary:
    if process is None:
        return ProcessSummary()
    return ProcessSummary(
        exit_code=process.exit_code, timed_out=process.timed_out,
        stdout_bytes=process.stdout_bytes, stderr_bytes=process.stderr_bytes,
        output_truncated=process.stdout_truncated or process.stderr_truncated,
        killed_on_timeout=[p.to_dict() for p in process.killed_on_timeout],
        leftover_processes=[p.to_dict() for p in process.leftover_processes],
        tree_clean=process.tree_clean,
    )


__all__ = ["EXIT_CODES", "RunResult", "execute_run"]
