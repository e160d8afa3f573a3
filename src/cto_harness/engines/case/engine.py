"""The WorkOS Case engine (`ca`). Stage 2 only; every gate fails closed with a named blocker.

Gates, in order (each `Blocked(code)`, exit 2, a full bundle): `engine_not_allowed`,
`stage_not_authorized`, `provider_unavailable`, `not_executable`, `provider_not_admitted` (the
digest of the private copy that will run, looked up in the admission registry), `identity_mismatch`
(`ca --help` probe; never `ca --version`), `model_not_admitted`, `credentials_missing`, and, once
the task files exist, `task_contract_invalid`. Each gate hands the `Admission` on, so a blocked
report shows how far admission got.

The task is written where Case's own task factory puts it, inside the workspace:
`.case/tasks/active/<id>.task.json` + `<id>.md`, and the marker `.case/active` (the id and a
newline), so that Case's helpers (`ca mark-tested`, `ca mark-reviewed`, `ca status`) find it; the
exact bytes are also copied into the bundle's `task/`. The fixture's `main` is pushed to the local
bare remote (`origin`), so a pull request has a base.

Then exactly `<private>/bin/ca run --task <task-file> --mode unattended` runs in the workspace with
a minimal environment (private HOME, CASE_DATA_DIR, PI_CODING_AGENT_DIR; only the selected model
provider's credential variables, or a per-run key for an endpoint the harness started), the local
pull-request sink `gh` and a recording `git` first on PATH, stdin /dev/null. Afterwards Case's own
event log and markers are read into `provider_claims` and `provider_outcome`: recorded, never
trusted — the verdict comes from the harness's diff and verification.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from cto_harness.clock import iso, utc_now
from cto_harness.contracts import ProviderInfo
from cto_harness.core.taskscan import outside_paths
from cto_harness.engines.base import (
    Admission,
    EngineSettings,
    Launch,
    LiveLog,
    Outcome,
    ProviderEvent,
    ProviderSpan,
    RunContext,
    run_gates,
)
from cto_harness.engines.case.command import CaseCommand
from cto_harness.engines.case.events import live_event, map_events, typed
from cto_harness.engines.case.guards import (
    collect_guard_records,
    collect_pull_requests,
    inspect_remotes,
    install_guards,
    real_git,
)
from cto_harness.engines.case.inputs import (
    CaseTask,
    ProjectsManifest,
    make_projects,
    make_task,
    render_brief,
    task_id,
    write_json,
)
from cto_harness.engines.case.pipeline import pipeline_outcome
from cto_harness.engines.model import AgentEngine, ModelAccess, ModelSettings, model_access
from cto_harness.engines.provider import engine_policy, outside_policy, provider_environment
from cto_harness.errors import Blocked, BlockerCode
from cto_harness.fsutil import read_jsonl, sha256_file
from cto_harness.git import git_env
from cto_harness.inert import path_text
from cto_harness.providers import lookup_admission
from cto_harness.sandbox.process import ProcessResult, run_quiet
from cto_harness.settings import PositiveWhole, SettingsConfigDict
from cto_harness.tree import files_in, read_file

# Case's event logs, all files together (each line becomes an event of the bundle: a log of
# `{}` lines would otherwise be millions of them, in memory and in events.normalized.jsonl).
_MAX_EVENT_LOG_BYTES = 32 * 1024 * 1024
# Case writes one event log a pipeline run; the provider can leave ~260,000 empty ones under the
# workspace limit, each read and named in report.json. Past this many, they are only counted.
_MAX_EVENT_LOG_FILES = 64
MAX_EVENT_ROWS = 50_000
_MAX_MARKER_BYTES = 4096
SUCCESS_LINE = "[unattended] Pipeline completed successfully."
EVENT_LOG = "backend/case-events.jsonl"


class CaseSettings(ModelSettings):
    """`CTO_HARNESS_CASE_*` and `CTO_HARNESS_ALLOW_CASE` (DESIGN section 3: contract names); the
    model's fields (`CTO_HARNESS_CASE_MODEL_*`: who answers, `engines/endpoint.py`) come from
    `ModelSettings`."""

    model_config = SettingsConfigDict(env_prefix="CTO_HARNESS_CASE_")
    # The two consent gates come from the environment of each invocation only.
    ENV_ONLY = frozenset({"allow", "stage"})

    allow: str | None = Field(default=None, validation_alias="CTO_HARNESS_ALLOW_CASE",
                              description="must be 1 for --engine case")
    stage: str | None = Field(default=None, description="must be 2")
    bin: str | None = Field(default=None, description="path of the admitted `ca`")
    timeout_seconds: PositiveWhole = Field(default=900, description="the provider's time limit")

    def run_stage(self) -> str:
        return self.stage or "unset"


class CaseEngine(AgentEngine):
    name = "case"
    settings_model = CaseSettings
    provider = "case"
    # Case keeps its tasks, events and markers under .case/ in the repository it works on.
    bookkeeping_dirs = (".case",)

    def provider_configured(self, settings: EngineSettings) -> bool | None:
        assert isinstance(settings, CaseSettings)
        return bool(settings.bin) and Path(settings.bin or "").is_file()

    def live_log(self, ctx: RunContext) -> LiveLog:
        """Case's event log as it is written: `.case/<task id>/events/run-*.jsonl`."""
        task = task_id(ctx.case.spec.id, ctx.run_id)
        return LiveLog(root=ctx.workspace, folder=f".case/{task}/events", prefix="run-",
                       suffix=".jsonl", parse=live_event)

    # --- paths of the run's private state ---------------------------------------------------

    @staticmethod
    def _bin_dir(ctx: RunContext) -> Path:
        return ctx.private / "bin"

    @staticmethod
    def _case_dir(ctx: RunContext) -> Path:
        return ctx.private / "case"

    @staticmethod
    def _remote(ctx: RunContext) -> Path:
        return ctx.private / "remote.git"

    @staticmethod
    def _task_file(ctx: RunContext) -> Path:
        task = task_id(ctx.case.spec.id, ctx.run_id)
        return ctx.workspace / ".case" / "tasks" / "active" / f"{task}.task.json"

    # --- gates --------------------------------------------------------------------------------

    def admit(self, ctx: RunContext) -> Admission:
        start = Admission(provider=ProviderInfo(name="case", path=CaseSettings.of(ctx).bin))
        return run_gates(ctx, start, (
            self._allowed, self._stage, self._configured, self._present, self._executable,
            self._admitted, self._identity, *self.model_gates(),
        ))

    def _allowed(self, ctx: RunContext, admission: Admission) -> Admission:
        if CaseSettings.of(ctx).allow != "1":
            raise Blocked(BlockerCode.ENGINE_NOT_ALLOWED,
                          "--engine case needs CTO_HARNESS_ALLOW_CASE=1")
        return admission

    def _stage(self, ctx: RunContext, admission: Admission) -> Admission:
        stage = CaseSettings.of(ctx).stage
        if stage != "2":
            raise Blocked(
                BlockerCode.STAGE_NOT_AUTHORIZED,
                f"only Stage 2 is authorized (CTO_HARNESS_CASE_STAGE=2), got {stage!r}",
            )
        return admission

    def _configured(self, ctx: RunContext, admission: Admission) -> Admission:
        configured = CaseSettings.of(ctx).bin
        if not configured:
            raise Blocked(
                BlockerCode.PROVIDER_UNAVAILABLE,
                f"{CaseSettings.setting_name('bin')} is not set: no Case provider is configured",
                marker="provider-unavailable.txt",
            )
        binary = Path(configured).absolute()
        return admission.with_provider(path=str(binary))

    def _present(self, ctx: RunContext, admission: Admission) -> Admission:
        binary = Path(admission.provider.path or "")
        if not binary.is_file():
            raise Blocked(
                BlockerCode.PROVIDER_UNAVAILABLE,
                f"{CaseSettings.setting_name('bin')} names no file: {binary}",
                marker="provider-unavailable.txt",
            )
        return admission

    def _executable(self, ctx: RunContext, admission: Admission) -> Admission:
        binary = Path(admission.provider.path or "")
        if not os.stat(binary).st_mode & 0o111:
            raise Blocked(BlockerCode.NOT_EXECUTABLE, f"{binary} has no execute permission")
        # Execute the bytes that were hashed: copy first, hash the copy, look the copy up.
        copy = self._bin_dir(ctx) / "ca"
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(binary, copy)
        copy.chmod(0o555)
        digest = sha256_file(copy)
        ctx.events.emit("gate.checked", gate="provider_digest", sha256=digest)
        return admission.with_provider(sha256=digest, executed_path=str(copy))

    def _admitted(self, ctx: RunContext, admission: Admission) -> Admission:
        copy = Path(admission.provider.executed_path or "")
        record = lookup_admission(ctx.settings, copy, self.provider or "case")
        if record is None:
            raise Blocked(
                BlockerCode.PROVIDER_NOT_ADMITTED,
                f"no admission record for {admission.provider.path} (sha256 "
                f"{admission.provider.sha256}); build or admit it with "
                "`cto-harness provider build|admit`",
                marker="provider-not-admitted.txt",
            )
        if why := outside_policy(record, engine_policy(ctx, self.provider or "case")):
            raise Blocked(
                BlockerCode.PROVIDER_NOT_ADMITTED,
                f"{admission.provider.path} (sha256 {admission.provider.sha256}) is not "
                f"admitted under this harness's policy: {why}",
                marker="provider-not-admitted.txt",
            )
        ctx.events.emit("gate.checked", gate="provider_admitted", passed=True,
                        provenance_level=record.provenance_level, commit=record.pin)
        admitted = admission.with_provider(pin=record.pin, source_url=record.source_url,
                                           provenance_level=record.provenance_level)
        return replace(admitted, status="admitted")

    # --- launch -------------------------------------------------------------------------------

    def prepare(self, ctx: RunContext, admission: Admission) -> Launch:
        spec = ctx.case.spec
        case_dir = self._case_dir(ctx)
        home, data, agent = case_dir / "home", case_dir / "data", case_dir / "pi-agent"
        tmp, records = case_dir / "tmp", case_dir / "records"
        for folder in (home, data, agent, tmp, records):
            folder.mkdir(parents=True, exist_ok=True)

        model = admission.model
        task = make_task(spec.id, ctx.run_id, spec.id, iso(utc_now()))
        task_file, brief_file, active = write_task_layout(
            ctx.workspace, task, render_brief(spec, task))
        projects_file = data / "projects.json"
        write_json(projects_file, make_projects(spec, ctx.workspace, self._remote(ctx)).to_json())
        write_json(data / "config.json", {
            "projects": str(projects_file),
            "models": {"default": {"provider": model.provider, "model": model.model}},
        })
        self._check_contract(ctx, task_file, brief_file, projects_file)

        # The exact files given to the provider, in the bundle before launch.
        given = []
        for source, name in ((task_file, task_file.name), (brief_file, brief_file.name),
                             (active, "active")):
            target = ctx.task_dir / name
            shutil.copyfile(source, target)
            given.append(target)

        access = model_access(ctx, admission, timeout_seconds=CaseSettings.of(ctx).timeout_seconds,
                              volatile={"TASK_ID": task.id})
        if access.base_url:
            write_json(agent / "models.json",
                       {"providers": {model.provider: {"baseUrl": access.base_url}}})
        # And how Case was configured (data dir and agent dir), as evidence beside the task.
        inputs = ctx.backend / "case-inputs"
        inputs.mkdir(exist_ok=True)
        for source in (data / "config.json", projects_file, agent / "models.json"):
            if source.is_file():
                shutil.copyfile(source, inputs / source.name)

        git = real_git()
        publish_base(ctx.workspace, self._remote(ctx), git, home)
        install_guards(self._bin_dir(ctx), records, self._remote(ctx), git, spec.id)

        copy = Path(admission.provider.executed_path or "")
        argv = CaseCommand(copy, task_file).argv()
        if sha256_file(copy) != admission.provider.sha256:
            raise Blocked(BlockerCode.PROVIDER_NOT_ADMITTED,
                          "the provider copy changed between hashing and launch",
                          marker="provider-not-admitted.txt")
        env = self._environment(ctx, home, data, agent, tmp, access)
        ctx.events.emit("provider.task.written", task_id=task.id, files={
            f"task/{target.name}": {"workspace_path": source.relative_to(ctx.workspace).as_posix(),
                                    "sha256": sha256_file(target)}
            for source, target in zip((task_file, brief_file, active), given, strict=True)
        })
        # Case must reach its model endpoint, and only that: the sandbox proxies exactly it.
        return Launch(argv=argv, env=env, cwd=ctx.workspace,
                      timeout_seconds=CaseSettings.of(ctx).timeout_seconds,
                      endpoint=access.endpoint)

    def _check_contract(
        self, ctx: RunContext, task_file: Path, brief_file: Path, projects_file: Path
    ) -> None:
        problems: list[str] = []
        try:
            CaseTask.model_validate_json(task_file.read_text(encoding="utf-8"))
            ProjectsManifest.model_validate_json(projects_file.read_text(encoding="utf-8"))
        except ValidationError as exc:
            problems.append(f"generated Case input is invalid: {exc.errors()[0]['msg']}")
        texts = [task_file.read_text(encoding="utf-8"), brief_file.read_text(encoding="utf-8")]
        if found := outside_paths(texts, ctx.workspace):
            problems.append(f"the task names paths outside the workspace: {', '.join(found)}")
        workspace = ctx.workspace.resolve()
        for folder in (workspace, *workspace.parents):
            manifest = folder / "package.json"
            try:
                name = json.loads(manifest.read_text(encoding="utf-8")).get("name")
            except (OSError, ValueError, AttributeError):
                continue
            if name == "case":
                problems.append(
                    f"{manifest} is a package.json named `case` above the working directory: "
                    "Case would read its projects from there"
                )
        if problems:
            raise Blocked(BlockerCode.TASK_CONTRACT_INVALID, "; ".join(problems))

    def _environment(self, ctx: RunContext, home: Path, data: Path, agent: Path, tmp: Path,
                     access: ModelAccess) -> dict[str, str]:
        return provider_environment(ctx, home, tmp, path_first=[self._bin_dir(ctx)], extra={
            "CASE_DATA_DIR": str(data), "PI_CODING_AGENT_DIR": str(agent), **access.environment})

    # --- after the run ------------------------------------------------------------------------

    def collect(self, ctx: RunContext, admission: Admission, result: ProcessResult) -> Outcome:
        endpoint = self.model_endpoint(ctx, admission)
        records = self._case_dir(ctx) / "records"
        git = real_git()
        forbidden = collect_guard_records(records, ctx.backend)
        pull_requests, unverified = collect_pull_requests(
            records, self._remote(ctx), git, ctx.workspace, self.bookkeeping_dirs)
        forbidden += unverified
        forbidden += inspect_remotes(ctx.workspace, self._remote(ctx), git)
        # The provider may rewrite its task folder: read without following its links.
        task_rel = self._task_file(ctx).relative_to(ctx.workspace).as_posix()
        after = read_file(ctx.workspace, task_rel, _MAX_MARKER_BYTES * 256)
        if after is not None:
            (ctx.backend / "task-after-run.json").write_bytes(after)
        task = task_id(ctx.case.spec.id, ctx.run_id)
        claims: dict[str, Any] = {"recorded_not_trusted": True, "task_id": task}
        logs, not_read = self._event_logs(ctx, task)
        claims["event_log"] = None
        claims["event_log_files"] = [path_text(rel) for rel, _data in logs]
        if not_read:
            claims["event_log_files_not_read"] = not_read
        pipeline_end = None
        events: tuple[ProviderEvent, ...] = ()
        spans: tuple[ProviderSpan, ...] = ()
        if logs:
            parts = [data for _rel, data in logs]
            raw = b"".join(part if part.endswith(b"\n") else part + b"\n" for part in parts)
            (ctx.backend / "case-events.jsonl").write_bytes(raw)
            rows, bad = read_jsonl(ctx.backend / "case-events.jsonl", limit=MAX_EVENT_ROWS)
            claims["event_lines_not_mapped"] = max(
                0, len([line for line in raw.splitlines() if line.strip()]) - len(rows) - bad)
            mapped = map_events(rows, fallback_ts=iso(utc_now()))
            events, spans = typed(mapped)
            pipeline_end = mapped.pipeline_end
            claims |= {"event_log": EVENT_LOG, "phase_results":
                       mapped.phase_results, "unreadable_event_lines": bad}
        claims["pipeline_end"] = pipeline_end
        claims["failed_agent"] = (pipeline_end or {}).get("failedAgent")
        claims["markers"] = {
            name: self._marker(ctx, task, name) for name in ("tested", "reviewed")
        }
        last = _last_line(ctx.backend / "stdout.log")
        claims["last_stdout_line"] = last
        claims["case_said_success"] = bool(
            pipeline_end and pipeline_end.get("outcome") == "completed" and last == SUCCESS_LINE
        )
        claims["task_status_after_run"] = _task_status(ctx.backend / "task-after-run.json")
        forbidden += self.credential_leaks(ctx, admission)
        outcome = pipeline_outcome(pipeline_end, claims.get("phase_results") or [],
                                   claims["event_log"])
        return Outcome(events=events, spans=spans, claims=claims, forbidden=tuple(forbidden),
                       provider_outcome=outcome, pull_requests=tuple(pull_requests),
                       model_endpoint=endpoint)

    @staticmethod
    def _event_logs(ctx: RunContext, task_id: str | None
                    ) -> tuple[list[tuple[bytes, bytes]], int]:
        """(path in the workspace, first bytes) of each event log, read without following any
        link the provider made (the workspace is its to shape), never a FIFO or device; and
        how many more there were than `_MAX_EVENT_LOG_FILES`, not read."""
        if task_id is None:
            return [], 0
        folder = f".case/{task_id}/events"
        logs = []
        left = _MAX_EVENT_LOG_BYTES
        names = sorted(n for n in files_in(ctx.workspace, folder)
                       if n.startswith(b"run-") and n.endswith(b".jsonl"))
        for name in names[:_MAX_EVENT_LOG_FILES]:
            if left <= 0:
                break
            rel = os.fsencode(folder) + b"/" + name
            data = read_file(ctx.workspace, rel, left)
            if data is not None:
                logs.append((rel, data))
                left -= len(data)
        return logs, max(0, len(names) - _MAX_EVENT_LOG_FILES)

    @staticmethod
    def _marker(ctx: RunContext, task_id: str | None, name: str) -> str | None:
        if task_id is None:
            return None
        data = read_file(ctx.workspace, f".case/{task_id}/{name}", _MAX_MARKER_BYTES)
        return None if data is None else data.decode("utf-8", "replace").strip()


def write_task_layout(workspace: Path, task: CaseTask, brief: str) -> tuple[Path, Path, Path]:
    """Case's own task layout inside the workspace: `.case/tasks/active/<id>.task.json` and
    `<id>.md`, and the marker `.case/active` (the id and a newline). Refuses to write through
    anything already there (a fixture shipping its own `.case`, a symlink)."""
    root = workspace / ".case"
    if os.path.lexists(root):
        raise Blocked(BlockerCode.TASK_CONTRACT_INVALID,
                      "the fixture already has a .case entry: the task layout would not be ours")
    folder = root / "tasks" / "active"
    folder.mkdir(parents=True)
    task_file, brief_file = folder / f"{task.id}.task.json", folder / f"{task.id}.md"
    write_json(task_file, task.to_json())
    brief_file.write_text(brief, encoding="utf-8")
    active = root / "active"
    active.write_text(task.id + "\n", encoding="utf-8")
    return task_file, brief_file, active


def publish_base(workspace: Path, remote: Path, git: str, home: Path) -> None:
    """Push the fixture's `main` to the local bare remote and make it the remote's default
    branch, as a hosted repository has one: a pull request needs a base."""
    env = git_env(home)
    run_quiet([git, "push", "-q", "origin", "main"], cwd=workspace, env=env)
    run_quiet([git, "--git-dir", str(remote), "symbolic-ref", "HEAD", "refs/heads/main"],
              env=env)


def _last_line(path: Path) -> str | None:
    if not path.is_file():
        return None
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 4096))
        tail = handle.read().decode("utf-8", "replace")
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:500] if lines else None


def _task_status(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
