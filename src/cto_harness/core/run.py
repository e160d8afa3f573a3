"""One Stage 2 run (DESIGN section 6), from gates to a sealed bundle.

The pipeline is a sequence of small stages; each takes typed values and returns one, which the
pipeline keeps in `StageResults` (core/report.py). Engines come in through three calls only:
`admit`, `prepare`, `collect` (engines/base.py). Every outcome, blocked, failed, errored or
interrupted, ends in a complete bundle: `_seal` runs whatever happened before it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cto_harness import engines
from cto_harness.clock import iso, utc_now
from cto_harness.contracts import (
    BaselineComparison,
    Blocker,
    CaseSpec,
    Report,
    VerificationResult,
    VerificationSpec,
)
from cto_harness.core import preflight
from cto_harness.core.events import EventLog
from cto_harness.core.faultseal import seal_despite_faults
from cto_harness.core.fixtures import FixtureCase, case_directory, load_case
from cto_harness.core.gitdir import disarm_git_dir
from cto_harness.core.interrupts import InterruptGate
from cto_harness.core.live import RunObserver, observer_of, tailing
from cto_harness.core.report import (
    BaselineRun,
    RunIdentity,
    StageResults,
    WorkspaceDiff,
    assemble_report,
    final_blockers,
    judge,
)
from cto_harness.core.taskscan import scan_contract
from cto_harness.core.testchannel import Collection
from cto_harness.core.testrun import run_verification, verification_env
from cto_harness.core.workspace import Snapshot, copy_tree, init_workspace_repo, split_changes
from cto_harness.engines import get_engine
from cto_harness.engines.base import (
    Admission,
    Engine,
    EngineSettings,
    GateBlocked,
    LiveLog,
    Outcome,
    ProviderEvent,
    ProviderSpan,
    RunContext,
)
from cto_harness.errors import (
    Blocked,
    BlockerCode,
    ExitCode,
    HarnessFault,
    Interrupted,
    UsageError,
)
from cto_harness.evidence.bundle import (
    clean_bundle,
    redact_files,
    redact_report,
    render_markdown,
    write_report_and_seal,
)
from cto_harness.evidence.challenge import bind
from cto_harness.evidence.layout import bundle_files
from cto_harness.evidence.signing import PUBLIC_KEY, sign_bundle
from cto_harness.fsutil import atomic_write_bytes, atomic_write_jsonl, atomic_write_text, tree_digest
from cto_harness.inert import inert, inert_tree, path_text
from cto_harness.sandbox.guard import DiskWatch, Watch
from cto_harness.sandbox.isolation import Sandbox
from cto_harness.sandbox.launch import Launch
from cto_harness.sandbox.probe import probe
from cto_harness.sandbox.process import SANDBOX_TASK_LIMIT, ProcessResult, run_process
from cto_harness.settings import Settings, secret_values
from cto_harness.tree import Budget, BudgetExceeded, TreeChanged, identity, remove_tree, walk

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

EXIT_CODES = {"pass": ExitCode.PASS, "fail": ExitCode.FAIL, "blocked": ExitCode.BLOCKED,
              "error": ExitCode.ERROR}


@dataclass(frozen=True)
class RunResult:
    report: Report
    run_dir: Path
    # The public half of the key that signed this bundle (for `verify_bundle(run_dir, key)`).
    public_key: Path | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.report.verdict]


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
    raise HarnessFault(f"cannot create a run directory under {runs_dir}")


def execute_run(
    case_id: str,
    engine_name: str | None = None,
    *,
    harness_root: Path,
    settings: Settings | None = None,
    environ: Mapping[str, str] | None = None,
    run_dir: Path | None = None,
    nonce: str | None = None,
    run_id: str | None = None,
    challenge: str | None = None,
    observer: RunObserver | None = None,
) -> RunResult:
    """Run one case with `engine_name` (default: the default engine, fake). Usage errors (a bad
    case id, an unknown engine, a bad setting) raise before anything is written; every other
    outcome ends in a sealed bundle. A `challenge` (the caller's value) is bound into the
    nonce, the report and the signature (evidence/challenge.py). An `observer` is told of each
    stage and of the provider's own events while it runs (a live progress line; core/live.py)."""
    environ = dict(os.environ if environ is None else environ)
    binding = bind(challenge) if challenge is not None else None
    settings = settings or Settings.from_env(environ)
    case_dir = case_directory(harness_root, case_id)
    engine = get_engine(engine_name or engines.DEFAULT_ENGINE)
    engine_settings = engine.load_settings(environ, home=settings.home)
    # Unusable folders and keys are one line now (usage error or fault), never a half bundle.
    preflight.check_run_folders(settings)
    if run_dir is not None:
        preflight.check_writable_folder(run_dir.parent, "run's parent folder")
    key = preflight.load_signing_key(settings)  # signs this run's bundle, whatever happens
    # What the machine can isolate with is probed (once per process) before the run folder
    # exists: a signal during a child's start can orphan the child, so none starts in between.
    probe()
    started = utc_now()
    # Ctrl-C and SIGTERM interrupt the stages only; anywhere else (the run folder's creation,
    # the handlers below, closing the sandbox, sealing) they wait until the bundle is whole.
    with InterruptGate() as gate:
        try:
            if run_dir is None:
                run_dir = new_run_dir(settings.runs_dir, case_id, started)
            else:
                run_dir.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            raise HarnessFault(f"cannot create the run folder: {exc}") from None
        stamp = started.strftime('%Y%m%dT%H%M%SZ')
        run_id = run_id or f"{stamp}-{case_id}-{secrets.token_hex(4)}"
        nonce = binding.nonce if binding else (nonce or secrets.token_hex(16))
        events = EventLog(run_id, nonce, observer)
        results = StageResults(challenge=binding)
        ctx: RunContext | None = None
        # What a stage leaves under way (the harness's own test collection) is stopped before
        # sealing.
        pending = contextlib.ExitStack()
        case = None
        try:
            try:
                events.emit("run.started", case_id=case_id, engine=engine.name)
                with events.span("task.load"):
                    case = load_case(case_dir)
            finally:
                # The context exists even when the case is malformed: the bundle can be written.
                ctx = _context(run_id, nonce, run_dir, case, case_dir, settings, engine_settings,
                               harness_root, environ, events)
            with gate.opened():
                _run_stages(engine, ctx, results, pending)
        except Blocked as blocked:
            if isinstance(blocked, GateBlocked):
                results.admission = blocked.admission  # how far admission got
            results.blockers.append(Blocker(code=blocked.code, message=blocked.message))
            events.emit("gate.blocked", code=blocked.code, message=blocked.message)
            if blocked.marker:
                _marker(run_dir, blocked.marker, blocked.message)
        except (Interrupted, KeyboardInterrupt):
            results.error = "interrupted by a signal before the run finished"
            results.blockers.append(Blocker(code=BlockerCode.INTERRUPTED, message=results.error))
            events.emit("run.interrupted")
        except UsageError:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        except Exception as exc:  # a harness fault: still a bundle, verdict error
            results.error = inert(f"{type(exc).__name__}: {exc}")
            events.emit("run.error", error=results.error)
        finally:
            pending.close()
        if ctx is None:  # the run folder could not even be laid out
            raise HarnessFault(f"cannot write in the run folder {run_dir}: {results.error}")
        if results.sandbox is not None:
            results.sandbox.close()  # network log, last sweep, files and uid back; never raises
        _release(engine, ctx)  # the model endpoint stops after the proxy that forwarded to it
        disarm_git_dir(ctx.workspace)  # what the operator opens beside the bundle runs nothing
        report = seal_despite_faults(lambda: _seal(engine, ctx, results, started, key),
                                      ctx, results)
    return RunResult(report=report, run_dir=run_dir, public_key=settings.keys_dir / PUBLIC_KEY)


def _context(
    run_id: str, nonce: str, run_dir: Path, case: FixtureCase | None, case_dir: Path,
    settings: Settings, engine_settings: EngineSettings, harness_root: Path,
    environ: Mapping[str, str], events: EventLog,
) -> RunContext:
    if case is None:
        # A placeholder so that the blocked bundle can still be written for a malformed case.
        case = FixtureCase(
            spec=CaseSpec.model_construct(
                id=case_dir.name, title="", task="", allowed_paths=[],
                verification=VerificationSpec.model_construct(command=[], framework="unittest",
                                                              files=[])),
            directory=case_dir,
        )
    for sub in ("backend", "task", "private"):
        (run_dir / sub).mkdir(exist_ok=True)
    return RunContext(run_id=run_id, nonce=nonce, run_dir=run_dir, case=case, settings=settings,
                      engine_settings=engine_settings, harness_root=harness_root,
                      environ=environ, events=events)


def _live_log(engine: Engine, ctx: RunContext) -> LiveLog | None:
    """Where the provider's log grows, for a live view; an engine that cannot say has none."""
    if ctx.events.observer is None:
        return None
    try:
        return engine.live_log(ctx)
    except Exception:  # a live view is never a reason for a run to fail
        return None


def _release(engine: Engine, ctx: RunContext) -> None:
    """Stop what the engine started besides the provider (its model endpoint), whatever
    happened; a failure to stop is recorded, the bundle is still written."""
    try:
        engine.release(ctx)
    except Exception as exc:
        ctx.events.emit("engine.release_failed", error=f"{type(exc).__name__}: {exc}")


def _marker(run_dir: Path, name: str, message: str) -> None:
    atomic_write_text(run_dir / "backend" / name, message.replace("\n", " ") + "\n")


# --- the stages, in order ---------------------------------------------------------------------


def _run_stages(engine: Engine, ctx: RunContext, results: StageResults,
                pending: contextlib.ExitStack) -> None:
    """Run each stage and keep what it returns; a gate that refuses raises `Blocked`. What a
    stage leaves running goes on `pending` (closed before sealing)."""
    results.sandbox = sandbox = choose_isolation(ctx)  # Blocked sandbox_user_unavailable
    # The engine writes the endpoint it is given by whether the proxy stands between (prepare).
    ctx = replace(ctx, network_isolated=sandbox.network_isolated)
    with ctx.events.span("gates") as attrs:
        results.task_scan = scan = scan_task(ctx)
        if not scan["passed"]:
            raise Blocked(BlockerCode.TASK_CONTRACT_INVALID,
                          f"the task contract names paths outside the workspace: "
                          f"{', '.join(scan['outside_paths'])}")
        results.admission = admission = engine.admit(ctx)
        attrs["admission"] = admission.status
        ctx.events.emit("gate.checked", gate="provider_admission", passed=True,
                        sha256=admission.provider.sha256)
    prepared = prepare_workspace(ctx, pending)
    snapshot, results.fixture_digest = prepared.snapshot, prepared.fixture_digest
    results.launch = launch = prepare_launch(engine, ctx, admission)
    confined = confine(ctx, sandbox, launch)
    watch = Watch.start(ctx.run_dir, [*ctx.settings.target_repositories, ctx.harness_root,
                                      ctx.settings.home],
                        preflight.self_written_dirs(ctx.settings, ctx.run_dir))
    with tailing(_live_log(engine, ctx), observer_of(ctx.events)):
        results.process, process_span = launch_provider(
            ctx, launch, confined,
            DiskWatch(sandbox.provider_writable(), ctx.settings.workspace_limit_bytes))
    # Nothing of the provider may run on, and its files are the harness's again, before the
    # harness reads anything it wrote.
    not_contained = sandbox.release(results.process)
    results.blockers += check_guards(ctx, sandbox, watch, launch, results.process, not_contained)
    results.diff = diff_workspace(ctx, sandbox, snapshot, engine.bookkeeping_dirs)
    results.outcome = collect_outcome(engine, ctx, admission, results.process, process_span)
    if results.blockers:
        return
    results.verification = verify(ctx, sandbox, prepared, engine.bookkeeping_dirs)
    sandbox.finish()  # Blocked containment_failed: something of the sandbox uid lives on
    with ctx.events.span("guards.verification"):
        watch.check_outside("the verification")  # Blocked outside_write_detected
    if engine.needs_baseline:
        results.baseline = run_baseline(ctx, results.verification, results.changes)
        if results.baseline.comparison.verdict != "pass":
            raise Blocked(BlockerCode.BASELINE_FAILED,
                          f"the same-run {engines.BASELINE_ENGINE} baseline ended "
                          f"{results.baseline.comparison.verdict}: the fixture is unsound")


def choose_isolation(ctx: RunContext) -> Sandbox:
    with ctx.events.span("isolation.probe") as attrs:
        sandbox = Sandbox.for_run(ctx)
        attrs["tier"] = sandbox.tier
    ctx.events.emit("isolation.selected", tier=sandbox.tier, reason=sandbox.reason)
    return sandbox


def scan_task(ctx: RunContext) -> dict[str, Any]:
    """The scan of the task contract for paths outside the workspace (none may be named)."""
    scan = scan_contract(ctx.case.spec, ctx.workspace, targets=ctx.settings.target_repositories)
    ctx.events.emit("gate.checked", gate="task_contract", passed=scan["passed"])
    return scan


@dataclass(frozen=True)
class PreparedWorkspace:
    snapshot: Snapshot
    fixture_digest: str
    # The harness's own collection of the pristine tests, under way in a process of its own.
    collection: Collection
    # The private folder the verification copy goes into, and its (device, inode) as made.
    area: Path
    area_id: tuple[int, int] | None


def prepare_workspace(ctx: RunContext, pending: contextlib.ExitStack) -> PreparedWorkspace:
    """Start collecting the pristine tests (stopped by `pending` if the run stops first), copy
    the fixture in, give it a git history and a local remote, snapshot it."""
    with ctx.events.span("workspace.prepare"):
        fixture_digest = tree_digest(ctx.case.repo)
        # Started first so that it overlaps the copy, the canary and the provider's run (its
        # result is waited for just before verification).
        area = ctx.private / "verification"
        area.mkdir(exist_ok=True)
        area_id = identity(area)  # checked again before the harness writes the copy there
        spec = ctx.case.spec.verification
        collection = Collection.start(
            command=list(spec.command), framework=spec.framework, repo=ctx.case.repo,
            env=verification_env(area / "collect-home"), log=area / "collect.log",
            fixture_digest=fixture_digest, timeout=spec.timeout_seconds, stop_with=pending)
        copy_tree(ctx.case.repo, ctx.workspace)
        init_workspace_repo(ctx.workspace, ctx.private / "remote.git", ctx.private / "git-home")
        snapshot = Snapshot(ctx.workspace, ctx.private / "snapshot.git", ctx.private / "git-home")
        snapshot.take_before()
        ctx.events.emit("workspace.prepared", fixture_digest=fixture_digest)
    return PreparedWorkspace(snapshot=snapshot, fixture_digest=fixture_digest,
                             collection=collection, area=area, area_id=area_id)


def prepare_launch(engine: Engine, ctx: RunContext, admission: Admission) -> Launch:
    """The engine's launch, with what the pipeline owns: the disk limit and the network the
    engine declared it needs."""
    launch = engine.prepare(ctx, admission)
    return replace(
        launch,
        file_size_limit=launch.file_size_limit or ctx.settings.workspace_limit_bytes,
        network=engine.needs_network,
    )


def confine(ctx: RunContext, sandbox: Sandbox, launch: Launch) -> Launch:
    """Prove the confinement with the canary (`isolation_breach` if it leaks); the launch in it."""
    with ctx.events.span("isolation.canary") as attrs:
        confined = sandbox.confine(launch)
        attrs["duration_ms"] = sandbox.canary_result.get("duration_ms")
    ctx.events.emit("isolation.canary.passed", tier=sandbox.tier,
                    observed=sandbox.canary_result.get("observed"))
    for name in ("stdout.log", "stderr.log"):
        (ctx.backend / name).touch()
    return confined


def launch_provider(ctx: RunContext, launch: Launch, confined: Launch,
                    disk: DiskWatch | None = None) -> tuple[ProcessResult, str]:
    """Run the one launch with its time limit (and `disk`, the limit on what it writes, watched
    while it runs); returns what happened and its span's id."""
    ctx.events.emit("provider.process.starting", argv=list(launch.argv))
    start = iso(utc_now())
    try:
        process = run_process(
            confined.argv, cwd=launch.cwd, env=launch.env,
            stdout_path=ctx.backend / "stdout.log", stderr_path=ctx.backend / "stderr.log",
            timeout_seconds=launch.timeout_seconds, file_size_limit=launch.file_size_limit,
            on_start=lambda pid: ctx.events.emit("provider.process.started", pid=pid),
            watch=disk, task_limit=SANDBOX_TASK_LIMIT,
        )
    finally:
        span = ctx.events.add_span("provider.process", start, iso(utc_now()),
                                   attributes={"argv": " ".join(launch.argv)})
    ctx.events.emit("provider.process.exited", exit_code=process.exit_code,
                    timed_out=process.timed_out, stopped_by_guard=process.stopped_by_guard,
                    leftover_processes=len(process.leftover_processes))
    return process, span


def check_guards(ctx: RunContext, sandbox: Sandbox, watch: Watch, launch: Launch,
                 process: ProcessResult, not_contained: Blocked | None = None) -> list[Blocker]:
    """Containment, tamper and outside-write guards (they raise `Blocked`; the disk limit is
    charged by the one walk of `diff_workspace`); a time-out is returned as a blocker, because
    the run still diffs and collects what the provider left."""
    found: list[Blocker] = []
    with ctx.events.span("guards"):
        try:
            if not_contained is not None:
                raise not_contained
            # Before the harness writes anything more into the bundle folder.
            watch.check()
            if process.stopped_by_guard:  # nothing past the limit is read or copied
                raise Blocked(BlockerCode.WORKSPACE_SIZE_EXCEEDED,
                              f"the provider was stopped: {process.stopped_by_guard}")
        finally:
            if process.timed_out:
                message = (f"the provider ran past its {launch.timeout_seconds:g}s limit; its "
                           f"whole process tree ({len(process.killed_on_timeout)} processes) "
                           f"was killed")
                _marker(ctx.run_dir, "provider-timeout.txt", message)
                found.append(Blocker(code=BlockerCode.PROVIDER_TIMEOUT, message=message))
    return found


def diff_workspace(ctx: RunContext, sandbox: Sandbox, snapshot: Snapshot,
                   bookkeeping_dirs: tuple[str, ...]) -> WorkspaceDiff:
    """The one walk of the workspace after the provider (the size limit charged with it), and
    from its inventory the change list, the patch and the freshness digest."""
    with ctx.events.span("workspace.diff"):
        _take_after(snapshot, sandbox.provider_writable(), ctx.settings.workspace_limit_bytes)
        changes, bookkeeping = split_changes(snapshot.changes(), ctx.case.spec.allowed_paths,
                                             bookkeeping_dirs,
                                             verification_files=ctx.case.spec.verification.files)
        diff = WorkspaceDiff(changes=changes, bookkeeping=bookkeeping,
                             patch=snapshot.patch(bookkeeping_dirs),
                             digest_after=snapshot.digest())  # = tree_digest(workspace - .git)
    ctx.events.emit("workspace.diffed", changed=len(changes), bookkeeping=len(bookkeeping))
    return diff


def _take_after(snapshot: Snapshot, writable: list[Path], limit: int) -> None:
    """The one walk of the workspace after the provider, and the size limit with it: the
    provider's private dirs are charged first, then the workspace as it is listed (every hard
    link at full size), before any content past the limit is read."""
    budget = Budget(limit)
    try:
        for folder in writable:
            if folder != snapshot.workspace:
                for _ in walk(folder, budget=budget):
                    pass
        snapshot.take_after(budget)
    except BudgetExceeded as exc:
        raise Blocked(
            BlockerCode.WORKSPACE_SIZE_EXCEEDED,
            f"the provider left more than the {limit // (1024 * 1024)} MiB limit "
            f"(CTO_HARNESS_WORKSPACE_LIMIT_MB) in the workspace and its private dirs: "
            f"{exc.budget.used} bytes counted in {exc.budget.entries} entries before the count "
            f"stopped (every hard link counts; nothing past the limit was read or copied)",
        ) from exc
    except TreeChanged as exc:
        where = f"{path_text(exc.rel)}: " if exc.rel else ""
        raise Blocked(BlockerCode.WORKSPACE_UNSTABLE,
                      f"the workspace (or the harness's private store) changed while the harness "
                      f"read it: {where}{exc.why}") from exc


def collect_outcome(engine: Engine, ctx: RunContext, admission: Admission,
                    process: ProcessResult, process_span: str) -> Outcome:
    """The engine's reading of the provider's own logs, recorded as provider events and spans."""
    outcome = _inert_outcome(engine.collect(ctx, admission, process))
    for event in outcome.events:
        # The data as one mapping: its keys are the provider's (`source` too), never kwargs.
        ctx.events.record(event.type, dict(event.data), source="provider", ts=event.ts)
    _provider_spans(ctx.events, outcome.spans, process_span)
    return outcome


def _inert_outcome(outcome: Outcome) -> Outcome:
    """What the provider said about itself, made inert before any of it reaches an artifact:
    no control character acts, and no lone surrogate (valid JSON, `\\udcff`, but not UTF-8)
    can stop report.json from being written."""
    said = outcome.provider_outcome
    return Outcome(
        events=tuple(ProviderEvent(ts=inert(e.ts), type=inert(e.type), data=inert_tree(dict(e.data)))
                     for e in outcome.events),
        spans=tuple(replace(s, key=inert(s.key), name=inert(s.name), start=inert(s.start),
                            end=inert(s.end),
                            parent_key=None if s.parent_key is None else inert(s.parent_key),
                            attributes=inert_tree(dict(s.attributes)))
                    for s in outcome.spans),
        claims=inert_tree(dict(outcome.claims)),
        forbidden=tuple(f.model_copy(update={"action": inert(f.action), "detail": inert(f.detail),
                                             "source": inert(f.source)})
                        for f in outcome.forbidden),
        provider_outcome=said.model_validate(inert_tree(said.model_dump(mode="json"))),
        pull_requests=tuple(pr.model_validate(inert_tree(pr.model_dump(mode="json")))
                            for pr in outcome.pull_requests),
        model_endpoint=None if outcome.model_endpoint is None else
        outcome.model_endpoint.model_validate(
            inert_tree(outcome.model_endpoint.model_dump(mode="json"))),
    )


def _provider_spans(events: EventLog, spans: tuple[ProviderSpan, ...], parent: str) -> None:
    ids: dict[str, str] = {}
    for span in spans:
        parent_id = ids.get(span.parent_key or "", parent)
        ids[span.key] = events.add_span(span.name, span.start, span.end, parent=parent_id,
                                        status=span.status, attributes=dict(span.attributes))


def verify(ctx: RunContext, sandbox: Sandbox, prepared: PreparedWorkspace,
           bookkeeping_dirs: tuple[str, ...]) -> VerificationResult:
    """The harness's own test run, in a copy made from the snapshot with the verification files
    laid back, judged from the harness's result channel against the collected test ids."""
    with ctx.events.span("verification") as attrs:
        ctx.events.emit("verification.started", command=ctx.case.spec.verification.command)
        expected = prepared.collection.result()  # Blocked test_collection_failed
        area = prepared.area
        if identity(ctx.private) is None or identity(area) != prepared.area_id:
            raise Blocked(BlockerCode.WORKSPACE_UNSTABLE,
                          "the harness's verification area was replaced while the provider ran")
        for leftover in (area / "repo", area / "home"):  # the copy goes into folders of our own
            remove_tree(leftover)
        result = run_verification(
            ctx.case, prepared.snapshot, area / "repo", ctx.run_dir / "test.log", area / "home",
            expected=expected, byte_limit=ctx.settings.workspace_limit_bytes,
            wrap=sandbox.verification_prefix(area, area / "repo"),
            bookkeeping_dirs=bookkeeping_dirs,
        )
        attrs["status"] = result.status
    ctx.events.emit("verification.finished", status=result.status, tests_ran=result.tests_ran,
                    exit_code=result.exit_code)
    return result


def run_baseline(ctx: RunContext, verification: VerificationResult,
                 changes: list[Any]) -> BaselineRun:
    """The baseline engine on its own copy of the same fixture, as a bundle inside this one."""
    start = utc_now()
    baseline = execute_run(
        ctx.case.spec.id, engines.BASELINE_ENGINE, harness_root=ctx.harness_root,
        settings=ctx.settings, environ=ctx.environ, run_dir=ctx.run_dir / "baseline",
        nonce=ctx.nonce, run_id=f"{ctx.run_id}.baseline",
    )
    duration_ms = int((utc_now() - start).total_seconds() * 1000)
    b = baseline.report
    if any(blocker.code == BlockerCode.INTERRUPTED for blocker in b.blockers):
        # The signal interrupted the nested run (its own gate took it): this run is interrupted
        # too, not judged on a baseline that never finished (`baseline_failed` said "unsound").
        raise Interrupted("the same-run baseline was interrupted")
    provider_files = sorted(c.path for c in changes)
    notes = _shape_differences(b, verification, bool(changes))
    comparison = BaselineComparison(
        run_id=b.run_id, verdict=b.verdict, changed_files=sorted(c.path for c in b.changed_files),
        provider_changed_files=provider_files, case_changed_files=provider_files,
        evidence_shape_equal=not notes, notes=notes,
        outcome_equal=(b.verdict == "pass") == (verification.status == "passed"),
    )
    ctx.events.emit("baseline.finished", verdict=b.verdict)
    return BaselineRun(comparison=comparison, duration_ms=duration_ms)


def _shape_differences(baseline: Report, verification: VerificationResult,
                       changed: bool) -> list[str]:
    """Evidence shape: the same kinds of evidence exist for both runs, so they can be compared."""
    notes = []
    if baseline.verification.command != verification.command:
        notes.append("verification commands differ")
    if baseline.verification.tests_ran != verification.tests_ran:
        notes.append(f"tests ran: baseline {baseline.verification.tests_ran}, "
                     f"provider {verification.tests_ran}")
    if bool(baseline.changed_files) != changed:
        notes.append("one run changed source files and the other did not")
    return notes


# --- sealing ----------------------------------------------------------------------------------


def _seal(engine: Engine, ctx: RunContext, results: StageResults, started: datetime,
          key: Ed25519PrivateKey) -> Report:
    """Every artifact (placeholders where a stage never ran), then report, manifest, freshness
    and signature. Runs whatever happened before it."""
    run_dir = ctx.run_dir
    # Before any artifact: what the provider may have planted in the bundle folder (the weakest
    # tier lets it) that no bundle may hold goes, and is named.
    results.bundle_entries_removed = clean_bundle(run_dir)
    if results.bundle_entries_removed:
        ctx.events.emit("bundle.cleaned", removed=results.bundle_entries_removed[:50])
    who = RunIdentity(run_id=ctx.run_id, nonce=ctx.nonce, run_dir=run_dir, case=ctx.case.spec,
                      engine=engine.name, stage=ctx.engine_settings.run_stage(),
                      needs_baseline=engine.needs_baseline)
    verdict, conditions = judge(results, who)
    _write_placeholders(ctx, results)
    finished = utc_now()
    ctx.events.emit("run.finished", verdict=verdict)
    ctx.events.close_root(iso(started), iso(finished), "ok" if verdict == "pass" else "error",
                          verdict=verdict, case_id=who.case.id, engine=engine.name)
    atomic_write_jsonl(run_dir / "events.normalized.jsonl",
                       (e.model_dump(mode="json") for e in ctx.events.events))
    atomic_write_jsonl(run_dir / "trace.jsonl",
                       (s.model_dump(mode="json") for s in ctx.events.spans))

    secrets_ = secret_values(ctx.environ)
    text_files = [run_dir / rel for rel in bundle_files(run_dir)
                  if not rel.startswith("baseline/")]
    redact_files(text_files, secrets_)
    report = redact_report(assemble_report(who, results, verdict=verdict,
                                           conditions=conditions, started=started,
                                           finished=finished), secrets_)
    atomic_write_text(run_dir / "report.md", render_markdown(report))
    redact_files([run_dir / "report.md"], secrets_)
    _remove_private(ctx)
    report = write_report_and_seal(run_dir, report, secrets=secrets_)
    # Last: the signature over the manifest and freshness record (evidence.dsse.json).
    sign_bundle(run_dir, key, {
        "run_id": report.run_id, "nonce": report.nonce, "case_id": report.case_id,
        "engine": report.engine, "verdict": report.verdict, "isolation": report.isolation.tier,
        "challenge": report.freshness.challenge,
    })
    return report


def _remove_private(ctx: RunContext) -> None:
    """`private/` out of the bundle for good: first renamed beside the run folder (one step, so
    whatever still writes there, such as a process of the run that a kill has not yet ended, no
    longer writes into the bundle), then removed by descriptors (no link followed, no depth
    limit); what cannot be removed stays in that hidden, temporary-named folder, never in the
    bundle (`verify` refuses a bundle with `private/`)."""
    for _ in range(3):  # again if something of the run made it anew meanwhile
        aside = ctx.run_dir.parent / f".{ctx.run_dir.name}.private.{secrets.token_hex(4)}.tmp"
        try:
            os.rename(ctx.private, aside)
        except FileNotFoundError:
            return
        except OSError:
            aside = ctx.private
        remove_tree(aside)


def _write_placeholders(ctx: RunContext, results: StageResults) -> None:
    """The files every bundle has, written as placeholders when their stage never ran."""
    run_dir = ctx.run_dir
    for name in ("stdout.log", "stderr.log"):
        (run_dir / "backend" / name).touch()
    if not (run_dir / "test.log").exists():
        codes = [b.code for b in final_blockers(results)]
        reason = ", ".join(codes) or results.error or "not reached"
        atomic_write_text(run_dir / "test.log", f"[cto-harness] verification not run: {reason}\n")
    patch = results.diff.patch if results.diff else b""
    atomic_write_bytes(run_dir / "patch.diff", patch)  # bytes: names and content as-is
    # The same test `verify` makes: a leftover temporary file is not a task file.
    if not any(name.startswith("task/") for name in bundle_files(run_dir)):
        atomic_write_text(ctx.task_dir / "NOT-GIVEN.txt",
                          "No task file was given to the provider: the run stopped before "
                          "launch.\n")


__all__ = ["EXIT_CODES", "RunResult", "execute_run"]
