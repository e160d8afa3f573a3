"""Typed contracts: the fixture case (case.toml), the task contract given to a provider, and the
evidence records (report, freshness, events, spans). JSON Schemas in `schemas/` are generated from
these models (`cto-harness schemas --write`), never written by hand.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from cto_harness.errors import BlockerCode

# A case id (and a Case task id): a slug.
CASE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")

Verdict = Literal["pass", "fail", "blocked", "error"]
ChangeKind = Literal["added", "modified", "deleted", "mode_changed", "type_changed"]
EntryKind = Literal["file", "symlink", "directory", "fifo", "socket", "char_device",
                    "block_device", "unknown", "unreadable"]
ProvenanceLevel = Literal["builtin", "built", "fetched", "asserted"]


class StrictModel(BaseModel):
    """Unknown fields are an error everywhere: a typo must never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=False)


def check_relative_glob(value: str) -> str:
    if not value or value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"must be a relative path or glob inside the workspace: {value!r}")
    if ".." in value.split("/") or "\\" in value:
        raise ValueError(f"must not climb out of the workspace: {value!r}")
    return value


def matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    """A field check (`Annotated[str, matching(...)]`): the whole value matches `pattern`, else
    the error `<what>: <value>`."""
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{what}: {value!r}")
        return value

    return AfterValidator(check)


# A path or glob relative to (and inside) the workspace or folder it is read against.
RelativeGlob = Annotated[str, AfterValidator(check_relative_glob)]


# --- the fixture case (case.toml) ------------------------------------------------------------


class VerificationSpec(StrictModel):
    command: list[str] = Field(
        min_length=1, description="argv run in the verification copy: `<python> [options] -m "
                                  "<framework> [arguments]`, run through the harness's driver")
    framework: Literal["unittest", "pytest"] = Field(
        description="the runner whose results the harness's driver reports on its own channel"
    )
    files: list[RelativeGlob] = Field(
        min_length=1,
        description="globs of the fixture's verification files, laid back before verification",
    )
    timeout_seconds: int = Field(default=120, gt=0, le=3600)


class EvidenceExpectations(StrictModel):
    changed_paths: list[RelativeGlob] = Field(
        default_factory=list, description="globs a correct solution is expected to change"
    )
    min_tests: int = Field(default=1, ge=1, description="fewer tests than this is a failure")


class FakeSolution(StrictModel):
    overlay: RelativeGlob = Field(
        default="fake/solution",
        description="directory (relative to the case folder) copied over the workspace",
    )
    delete: list[RelativeGlob] = Field(default_factory=list,
                                       description="workspace paths to delete")
    script: RelativeGlob | None = Field(
        default=None,
        description="optional Python script (relative to the case folder) run in the workspace",
    )
    commit: bool = Field(default=False, description="commit the solution in the workspace's git")


class AuthoringNotes(StrictModel):
    """Notes for `cto-harness case check`; never given to a provider."""

    pristine_tests_pass_because: str | None = Field(
        default=None, min_length=1,
        description="only for a case whose tests already pass on the original repository "
                    "(say why, e.g. a refactoring that the tests guard); otherwise the pristine "
                    "tests must fail",
    )


class CaseSpec(StrictModel):
    """A fixture case: `harness/evals/cases/<id>/case.toml` beside its pristine `repo/`."""

    id: Annotated[str, matching(CASE_ID_PATTERN, "case id must match [a-z0-9][a-z0-9-]*")]
    title: str = Field(min_length=1)
    tags: list[Annotated[str, matching(CASE_ID_PATTERN, "tags match [a-z0-9][a-z0-9-]*")]] = Field(
        default_factory=list, description="labels for people and tools (`cto-harness cases "
        "--json`), [a-z0-9][a-z0-9-]*; never given to a provider")
    task: str = Field(min_length=1, description="the task text given to the provider")
    allowed_paths: list[RelativeGlob] = Field(min_length=1)
    forbidden_actions: list[str] = Field(default_factory=list)
    verification: VerificationSpec
    evidence: EvidenceExpectations = Field(default_factory=EvidenceExpectations)
    fake: FakeSolution = Field(default_factory=FakeSolution)
    authoring: AuthoringNotes = Field(default_factory=AuthoringNotes)


# --- what a provider is given ----------------------------------------------------------------


class TaskContract(StrictModel):
    """Only what DESIGN section 5 allows: fixture inputs, allowed paths, forbidden actions, the
    verification command and the evidence expectations. No path outside the workspace."""

    case_id: str
    title: str
    instructions: str
    allowed_paths: list[str]
    forbidden_actions: list[str]
    verification_command: list[str]
    evidence_expectations: EvidenceExpectations

    @classmethod
    def from_case(cls, case: CaseSpec) -> TaskContract:
        return cls(
            case_id=case.id,
            title=case.title,
            instructions=case.task,
            allowed_paths=list(case.allowed_paths),
            forbidden_actions=list(case.forbidden_actions),
            verification_command=list(case.verification.command),
            evidence_expectations=case.evidence,
        )


# --- evidence ---------------------------------------------------------------------------------


class Blocker(StrictModel):
    code: BlockerCode
    message: str


class DiffStats(StrictModel):
    """patch.diff in numbers (`diff --stat`'s): files, added and removed lines."""

    files: int = 0
    additions: int = 0
    deletions: int = 0
    binary_files: int = Field(default=0, description="files whose change is binary (no lines)")


class ChangedFile(StrictModel):
    path: str = Field(description="relative path, inert and injective (cto_harness.inert."
                      "path_text): control characters as tokens such as ␛, invisible ones as "
                      "⟨U+202E⟩, bytes that are not UTF-8 as ⟨0xFF⟩")
    change: ChangeKind
    old_mode: str | None = None
    new_mode: str | None = None
    symlink: bool = False
    allowed: bool = True
    kind: EntryKind = Field(default="file", description="what the entry is now (or was)")
    notes: list[str] = Field(
        default_factory=list,
        description="nested .git, hard link, special file, name not UTF-8, past PATH_MAX, "
                    "why a change is disallowed whatever the globs")


class FrozenModel(StrictModel):
    """A value handed from stage to stage: changed only by copying (`model_copy(update=...)`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderInfo(FrozenModel):
    name: str
    path: str | None = None
    executed_path: str | None = Field(default=None, description="the hashed copy that ran")
    sha256: str | None = None
    source_url: str | None = None
    pin: str | None = Field(default=None, description="pinned source commit")
    provenance_level: ProvenanceLevel | None = None


EndpointKind = Literal["live", "replay", "scripted"]


class ModelEndpointInfo(FrozenModel):
    """Who answered the provider's model requests, as the harness knows it (never the
    provider's claim): the harness started the endpoint itself, or the admitted model says."""

    mode: Literal["live", "scripted", "replay", "record"]
    started_by_harness: bool = False
    url: str | None = Field(default=None, description="the base URL the provider was given")
    upstream: str | None = Field(default=None, description="record: where requests went")
    script_set: str | None = None
    script_files: list[str] = Field(default_factory=list)
    script_digest: str | None = None
    cassette_sha256: str | None = Field(default=None, description="the cassette served or written")
    requests: int = 0
    errors: list[str] = Field(default_factory=list)
    log: str | None = Field(default=None, description="backend/ file with one line per exchange")
    cassette: str | None = Field(default=None, description="backend/ cassette written (record)")


class ModelInfo(FrozenModel):
    provider: str | None = None
    model: str | None = None
    base_url: str | None = None
    admitted: bool = False
    endpoint_kind: EndpointKind | None = Field(
        default=None, description="live, replay or scripted: a scripted pass is not a live one"
    )
    endpoint: ModelEndpointInfo | None = None


class Timing(StrictModel):
    started_at: str
    finished_at: str
    duration_ms: int
    provider_ms: int | None = None
    verification_ms: int | None = None
    baseline_ms: int | None = None


class VerificationResult(StrictModel):
    status: Literal["passed", "failed", "not_run"] = "not_run"
    command: list[str] = Field(default_factory=list)
    framework: str | None = None
    exit_code: int | None = None
    timed_out: bool = False
    tests_ran: int = 0
    tests_passed: int = 0
    tests_failed: int = 0
    restored_files: list[str] = Field(default_factory=list)
    duration_ms: int | None = None
    reason: str | None = None
    failures: list[str] = Field(
        default_factory=list,
        description="named failed conditions (runner_did_not_finish, expected_tests_missing, "
                    "unexpected_tests, tests_failed, exit_status_inconsistent, ...)")
    result_channel: str | None = Field(
        default=None, description="where the outcome came from: the harness's own driver")
    tests_expected: int = Field(
        default=0, description="tests the pristine verification files define, collected by "
                               "the harness in a separate process")
    tests_skipped: int = 0
    runner_finished: bool = False
    missing_tests: list[str] = Field(default_factory=list)
    unexpected_tests: list[str] = Field(default_factory=list)
    framework_tampered: list[str] = Field(default_factory=list)
    log_counts: dict[str, int] | None = Field(
        default=None, description="counts parsed from test.log: a cross-check for people, "
                                  "never the verdict")
    tests: list[dict[str, str]] = Field(
        default_factory=list,
        description="each test as the harness's driver reported it (id, outcome, the failure's "
                    "text), then each expected test that was not reported (`not_reported`)")
    copy_made: dict[str, int] = Field(
        default_factory=dict, description="the verification copy as made from the snapshot "
                                          "(files, links, directories, bytes)")


class ProcessSummary(StrictModel):
    exit_code: int | None = None
    timed_out: bool = False
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    output_truncated: bool = False
    killed_on_timeout: list[dict[str, Any]] = Field(default_factory=list)
    leftover_processes: list[dict[str, Any]] = Field(default_factory=list)
    tree_clean: bool = True


class ForbiddenAction(StrictModel):
    action: str
    detail: str
    source: str


class LocalPullRequest(FrozenModel):
    """A pull request the provider opened against the local bare remote (never a real host)."""

    number: int
    url: str
    title: str
    base: str
    head: str
    head_commit: str | None = None
    body_excerpt: str = ""
    body_sha256: str | None = None
    verified: bool = Field(
        default=False, description="the harness found the head commit on the local remote"
    )
    problem: str | None = None


class BaselineComparison(StrictModel):
    run_id: str | None = None
    verdict: Verdict | None = None
    bundle: str = "baseline"
    changed_files: list[str] = Field(default_factory=list, description="the baseline's changes")
    provider_changed_files: list[str] = Field(
        default_factory=list, description="the provider run's source changes")
    case_changed_files: list[str] = Field(
        default_factory=list, description="= provider_changed_files (the contract's name)")
    evidence_shape_equal: bool | None = None
    outcome_equal: bool | None = None
    notes: list[str] = Field(default_factory=list)


class PhaseOutcome(FrozenModel):
    phase: str
    agent: str | None = None
    outcome: str | None = Field(default=None, description="the provider's phase_end outcome")
    status: str | None = Field(default=None, description="the agent's own result status")
    summary: str | None = None
    error: str | None = None


_COMPLETED_OUTCOMES = frozenset({"completed", "success", "succeeded", "passed"})
_FAILED_OUTCOMES = frozenset({"failed", "failure", "error", "errored", "aborted"})


def outcome_class(outcome: object) -> Literal["completed", "failed"] | None:
    """A provider's outcome word in a closed set: "completed", "failed", or None for anything
    else (`COMPLETED`, `done`, `completed` with an invisible mark after it). Only a word of the
    set is ever compared with the verdict: a provider cannot make agreement out of a word the
    harness does not know."""
    if outcome in _COMPLETED_OUTCOMES:
        return "completed"
    if outcome in _FAILED_OUTCOMES:
        return "failed"
    return None


class ProviderOutcome(FrozenModel):
    """The provider's own account of its run (Case: `pipeline_end` and each `phase_end` of its
    event log): shown beside the verdict, never a reason for it. The harness fills the last
    three fields (`core/outcome.py`): whether it agrees with the verdict, and a named note when
    it does not."""

    provider: str | None = Field(default=None, description="who said it (e.g. Case); None: the "
                                 "engine states no pipeline of its own")
    outcome: str | None = Field(default=None, description="e.g. completed, failed; None: silent")
    failed_agent: str | None = None
    phases: list[PhaseOutcome] = Field(default_factory=list)
    source: str | None = Field(default=None, description="the bundle file it was read from")
    agrees_with_verdict: bool | None = Field(
        default=None, description="null when the verdict is neither pass nor fail, or the "
        "provider stated nothing or an outcome outside the known words (completed, success, "
        "succeeded, passed; failed, failure, error, errored, aborted)"
    )
    note_code: str | None = Field(
        default=None, description="provider_failed_harness_passed, provider_completed_harness_"
        "failed or provider_outcome_unknown"
    )
    note: str | None = None


class IsolationInfo(StrictModel):
    tier: Literal["bwrap", "landlock", "none"] = "none"
    tool: str | None = None
    version: str | None = None
    digest: str | None = None
    namespaces: list[str] = Field(default_factory=list)
    hidden_paths: list[str] = Field(default_factory=list)
    writable_paths: list[str] = Field(default_factory=list)
    network: Literal["none", "endpoint", "tcp_blocked", "shared"] = Field(
        default="shared", description="none: loopback only; endpoint: loopback and the one "
        "allowed endpoint through the harness's proxy; shared: the host's network (marked)")
    reason: str = Field(default="", description="why no stronger tier was used")
    requested: str = Field(default="auto", description="CTO_HARNESS_ISOLATION")
    probe: dict[str, Any] = Field(default_factory=dict, description="what the machine offered")
    canary: dict[str, Any] = Field(default_factory=dict)
    uid: int | None = Field(default=None, description="the uid every sandboxed process ran as")
    gid: int | None = None
    user_source: str | None = Field(
        default=None, description="allocated (a sandbox uid locked for the run) or harness")
    endpoint: dict[str, Any] | None = Field(
        default=None, description="the one endpoint the provider could reach, and how")
    network_log: str | None = Field(default=None, description="backend/network.jsonl")
    connections: int = 0
    containment: dict[str, Any] = Field(
        default_factory=dict, description="PID namespace, uid sweep, and whether each proved "
        "that nothing of the sandbox outlived it")
    warnings: list[str] = Field(default_factory=list,
                                description="weaker than promised, e.g. network: shared")


class NoTargetInspection(StrictModel):
    task_scan: dict[str, Any] = Field(default_factory=dict)
    hidden_paths: list[str] = Field(default_factory=list)
    canary: dict[str, Any] = Field(default_factory=dict)


class Freshness(StrictModel):
    run_id: str
    nonce: str
    started_at: str
    finished_at: str
    fixture_digest: str | None = None
    workspace_digest_before: str | None = None
    workspace_digest_after: str | None = None
    provider_sha256: str | None = None
    artifacts_manifest_sha256: str | None = Field(
        default=None, description="digest of artifacts.sha256 (set in freshness.json only)"
    )
    challenge: str | None = Field(
        default=None, description="the caller's `--challenge`; the nonce is derived from it")
    challenge_salt: str | None = Field(
        default=None, description="nonce = sha256('cto-harness.challenge/1' NUL salt NUL "
                                  "challenge)[:32 hex]")


class Report(StrictModel):
    schema_version: str
    harness_version: str
    run_id: str
    nonce: str
    run_dir: str
    case_id: str
    engine: str
    stage: str
    verdict: Verdict
    blockers: list[Blocker] = Field(default_factory=list)
    source_admission_status: Literal["admitted", "not_admitted"] = "not_admitted"
    provider_process_started: bool = False
    case_process_started: bool = Field(
        default=False, description="= provider_process_started (the contract's name)")
    backend_exit_code: int | None = None
    allowed_writes_passed: bool = False
    changed_files: list[ChangedFile] = Field(default_factory=list)
    bookkeeping_changes: list[ChangedFile] = Field(default_factory=list)
    diff_stats: DiffStats = Field(default_factory=DiffStats,
                                  description="patch.diff in numbers (files, + and - lines)")
    command: list[str] = Field(default_factory=list)
    provider: ProviderInfo
    model: ModelInfo = Field(default_factory=ModelInfo)
    timing: Timing
    process: ProcessSummary = Field(default_factory=ProcessSummary)
    verification: VerificationResult = Field(default_factory=VerificationResult)
    forbidden_actions_attempted: list[ForbiddenAction] = Field(default_factory=list)
    provider_claims: dict[str, Any] = Field(default_factory=dict)
    provider_outcome: ProviderOutcome = Field(default_factory=ProviderOutcome)
    pull_requests: list[LocalPullRequest] = Field(default_factory=list)
    baseline: BaselineComparison | None = None
    isolation: IsolationInfo = Field(default_factory=IsolationInfo)
    no_target_inspection: NoTargetInspection = Field(default_factory=NoTargetInspection)
    pass_conditions: dict[str, bool] = Field(default_factory=dict)
    artifacts: dict[str, str] = Field(default_factory=dict)
    freshness: Freshness
    bundle_entries_removed: list[str] = Field(
        default_factory=list,
        description="entries the provider planted in the bundle folder that no bundle may hold "
                    "(links, special files, paths past PATH_MAX), removed before sealing")

    @field_validator("provider_outcome", mode="before")
    @classmethod
    def _older_outcome(cls, value: Any) -> Any:
        # Reports written before the field was always present hold null: nothing stated.
        return {} if value is None else value


class NormalizedEvent(StrictModel):
    run_id: str
    nonce: str
    seq: int
    ts: str
    source: Literal["harness", "provider"]
    type: str
    data: dict[str, Any] = Field(default_factory=dict)


class Span(StrictModel):
    """One span in OpenTelemetry's shape (ids as lowercase hex)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    name: str
    start_time: str
    end_time: str
    status: Literal["ok", "error", "unset"] = "unset"
    attributes: dict[str, Any] = Field(default_factory=dict)


SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "report": Report,
    "freshness": Freshness,
    "normalized-event": NormalizedEvent,
    "span": Span,
    "case": CaseSpec,
    "task-contract": TaskContract,
}
