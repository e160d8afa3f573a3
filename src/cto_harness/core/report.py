"""Report assembly: the verdict, the pass conditions and every field of report.json, from the
values the stages of one run returned (`StageResults`). Pure: reads values, writes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cto_harness import REPORT_SCHEMA_VERSION, __version__
from cto_harness.clock import iso
from cto_harness.contracts import (
    BaselineComparison,
    Blocker,
    CaseSpec,
    ChangedFile,
    Freshness,
    IsolationInfo,
    ModelInfo,
    NoTargetInspection,
    ProcessSummary,
    ProviderInfo,
    Report,
    Timing,
    Verdict,
    VerificationResult,
)
from cto_harness.core.globs import matches_any
from cto_harness.core.outcome import judge_outcome
from cto_harness.engines.base import Admission, Outcome
from cto_harness.errors import BlockerCode
from cto_harness.evidence.challenge import ChallengeBinding
from cto_harness.sandbox.isolation import Sandbox
from cto_harness.sandbox.launch import Launch
from cto_harness.sandbox.process import ProcessResult


@dataclass(frozen=True)
class WorkspaceDiff:
    """The workspace after the provider, against the snapshot before it."""

    changes: list[ChangedFile]  # source changes, each judged against the allowed paths
    bookkeeping: list[ChangedFile]  # under the provider's own bookkeeping folders
    patch: bytes
    digest_after: str


@dataclass(frozen=True)
class BaselineRun:
    comparison: BaselineComparison
    duration_ms: int


@dataclass
class StageResults:
    """What each stage of one run returned, set once by the pipeline as the stage ends. The
    report is built from it whatever happened: a stage never reached leaves its default."""

    blockers: list[Blocker] = field(default_factory=list)
    error: str | None = None
    challenge: ChallengeBinding | None = None  # the caller's challenge, bound into the nonce
    task_scan: dict[str, Any] = field(default_factory=dict)
    sandbox: Sandbox | None = None
    admission: Admission | None = None
    fixture_digest: str | None = None
    launch: Launch | None = None
    process: ProcessResult | None = None
    diff: WorkspaceDiff | None = None
    outcome: Outcome = field(default_factory=Outcome)
    verification: VerificationResult = field(default_factory=VerificationResult)
    baseline: BaselineRun | None = None
    # What the provider planted in the bundle folder that no bundle may hold, removed at sealing.
    bundle_entries_removed: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[ChangedFile]:
        return self.diff.changes if self.diff else []


@dataclass(frozen=True)
class RunIdentity:
    """Who the report is about (the run context's ids and the engine's declarations)."""

    run_id: str
    nonce: str
    run_dir: Path
    case: CaseSpec
    engine: str
    stage: str
    needs_baseline: bool


def pass_conditions(results: StageResults, case: CaseSpec, needs_baseline: bool
                    ) -> dict[str, bool]:
    """Every condition a pass requires (DESIGN section 7), as observed by the harness."""
    process = results.process
    changes = results.changes
    conditions = {
        "provider_process_started": process is not None,
        "provider_exited_zero": process is not None and process.exit_code == 0,
        "no_processes_left_running": process is not None and not process.leftover_processes,
        "allowed_writes_passed": all(c.allowed for c in changes),
        "expected_changes_present": all(
            any(matches_any(c.path, [pattern]) for c in changes)
            for pattern in case.evidence.changed_paths
        ),
        "harness_verification_passed": results.verification.status == "passed",
        "no_forbidden_action_attempted": not results.outcome.forbidden,
    }
    if needs_baseline:
        baseline = results.baseline.comparison if results.baseline else None
        conditions["baseline_passed_same_shape"] = bool(
            baseline and baseline.verdict == "pass" and baseline.evidence_shape_equal)
    return conditions


def judge(results: StageResults, who: RunIdentity) -> tuple[Verdict, dict[str, bool]]:
    """(verdict, pass conditions): error beats blocked beats the conditions."""
    if results.error:
        return "error", {}
    if results.blockers:
        return "blocked", {}
    conditions = pass_conditions(results, who.case, who.needs_baseline)
    return ("pass" if all(conditions.values()) else "fail"), conditions


def final_blockers(results: StageResults) -> list[Blocker]:
    """The report's blockers: a harness error is one too (an interruption names itself)."""
    blockers = list(results.blockers)
    if results.error and not any(b.code == BlockerCode.INTERRUPTED for b in blockers):
        blockers.append(Blocker(code=BlockerCode.HARNESS_ERROR, message=results.error))
    return blockers


def process_summary(process: ProcessResult | None) -> ProcessSummary:
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


def assemble_report(
    who: RunIdentity, results: StageResults, *, verdict: Verdict, conditions: dict[str, bool],
    started: datetime, finished: datetime,
) -> Report:
    process = results.process
    admission = results.admission
    provider = admission.provider if admission else ProviderInfo(name=who.engine)
    started_process = process is not None
    sandbox = results.sandbox
    isolation = sandbox.info() if sandbox else IsolationInfo(
        reason="the run stopped before the isolation was chosen")
    baseline = results.baseline
    model = admission.model if admission else ModelInfo()
    if results.outcome.model_endpoint is not None:
        model = model.model_copy(update={"endpoint": results.outcome.model_endpoint})
    return Report(
        schema_version=REPORT_SCHEMA_VERSION,
        harness_version=__version__,
        run_id=who.run_id,
        nonce=who.nonce,
        run_dir=str(who.run_dir.resolve()),
        case_id=who.case.id,
        engine=who.engine,
        stage=who.stage,
        verdict=verdict,
        blockers=final_blockers(results),
        source_admission_status=admission.status if admission else "not_admitted",
        provider_process_started=started_process,
        case_process_started=started_process,
        backend_exit_code=process.exit_code if process else None,
        allowed_writes_passed=started_process and all(c.allowed for c in results.changes),
        changed_files=results.changes,
        bookkeeping_changes=results.diff.bookkeeping if results.diff else [],
        command=list(results.launch.argv) if results.launch else [],
        provider=provider,
        model=model,
        timing=Timing(
            started_at=iso(started), finished_at=iso(finished),
            duration_ms=int((finished - started).total_seconds() * 1000),
            provider_ms=process.duration_ms if process else None,
            verification_ms=results.verification.duration_ms,
            baseline_ms=baseline.duration_ms if baseline else None,
        ),
        process=process_summary(process),
        verification=results.verification,
        forbidden_actions_attempted=list(results.outcome.forbidden),
        provider_claims=dict(results.outcome.claims),
        provider_outcome=judge_outcome(results.outcome.provider_outcome, verdict),
        pull_requests=list(results.outcome.pull_requests),
        baseline=baseline.comparison if baseline else None,
        isolation=isolation,
        no_target_inspection=NoTargetInspection(
            task_scan=results.task_scan,
            hidden_paths=isolation.hidden_paths if sandbox else [],
            canary=sandbox.canary_result if sandbox else {},
        ),
        pass_conditions=conditions,
        bundle_entries_removed=results.bundle_entries_removed,
        freshness=Freshness(
            run_id=who.run_id, nonce=who.nonce, started_at=iso(started),
            finished_at=iso(finished), fixture_digest=results.fixture_digest,
            workspace_digest_before=results.fixture_digest,
            workspace_digest_after=results.diff.digest_after if results.diff else None,
            provider_sha256=provider.sha256,
            challenge=results.challenge.challenge if results.challenge else None,
            challenge_salt=results.challenge.salt if results.challenge else None,
        ),
    )
