"""The pi engine: `@mariozechner/pi-coding-agent` (MIT), admitted from npm at the policy's pinned
version (`harness/providers/pi/policy.toml`, kind `npm`), run non-interactively under its admitted
Bun: `<bun> <entry> --print --mode json --no-session ... <prompt>`.

Gates, in order (each `Blocked(code)`, exit 2, a full bundle): `provider_unavailable` (no
admitted install at the policy's version, or the one `CTO_HARNESS_PI_ADMISSION` names),
`provider_not_admitted` (the run's linked copy of the tree, entry point and runtime re-hashed
against the record), `identity_mismatch` (`pi --help` on that copy), `model_not_admitted`,
`credentials_missing` (a live endpoint only: a scripted or replayed endpoint, which the harness
starts on loopback from `harness/model-scripts/<case>/<set>/` or a cassette, gets a per-run key).
The model gates and the endpoint are the ones every engine shares (`engines/model.py`,
`engines/endpoint.py`). Then pi runs in the workspace with a private HOME and agent dir (its
`models.json` points the model provider at the base URL; the key goes by variable name), no
extensions, skills, prompt templates, themes or context files, no session file, offline start-up
(no update check, no telemetry). Its JSON event stream (stdout) is read back as its own account:
recorded, never trusted.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import Field

from cto_harness.clock import iso, utc_now
from cto_harness.contracts import ForbiddenAction, ProviderInfo
from cto_harness.core.taskscan import outside_paths
from cto_harness.engines.base import (
    Admission,
    EngineSettings,
    Launch,
    LiveLog,
    Outcome,
    RunContext,
    run_gates,
)
from cto_harness.engines.model import AgentEngine, ModelAccess, ModelSettings, model_access
from cto_harness.engines.pi.events import LogRows, account, live_event
from cto_harness.engines.pi.install import (
    changed_parts,
    choose_admission,
    drop_launch_copy,
    hashed,
    place,
)
from cto_harness.engines.pi.prompt import model_config, render_prompt
from cto_harness.engines.provider import provider_environment
from cto_harness.errors import Blocked, BlockerCode
from cto_harness.fsutil import atomic_write_json, sha256_file
from cto_harness.providers.npm import NpmPaths
from cto_harness.sandbox.process import ProcessResult
from cto_harness.settings import PositiveWhole, SettingsConfigDict

EVENT_LOG = "backend/stdout.log"
# The run's private state (under `ctx.private`): the linked, re-hashed install; pi's HOME,
# agent dir and TMPDIR.
DIST, STATE = "pi-dist", "pi"


class PiSettings(ModelSettings):
    """`CTO_HARNESS_PI_*`; the model's fields (`CTO_HARNESS_PI_MODEL_*`) come from
    `ModelSettings`."""

    model_config = SettingsConfigDict(env_prefix="CTO_HARNESS_PI_")

    admission: str | None = Field(
        default=None, description="SHA-256 (or prefix) of the admitted install to run "
        "(default: the newest admitted at the policy's version)")
    timeout_seconds: PositiveWhole = Field(default=900, description="pi's time limit")
    model_script: str = Field(default="pi-happy", pattern=r"^[a-z0-9][a-z0-9-]*$",
                              description="the script set harness/model-scripts/<case>/<set>/")


class PiEngine(AgentEngine):
    name = "pi"
    settings_model = PiSettings
    provider = "pi"
    policy_kind = "npm"

    def provider_configured(self, settings: EngineSettings) -> bool | None:
        return None  # admitted from the registry, not configured by a path

    # --- gates --------------------------------------------------------------------------------

    def admit(self, ctx: RunContext) -> Admission:
        return run_gates(ctx, Admission(provider=ProviderInfo(name="pi")), (
            self._installed, self._identity, *self.model_gates(),
        ))

    def _installed(self, ctx: RunContext, admission: Admission) -> Admission:
        policy = self.policy(ctx)
        record = choose_admission(ctx.settings, policy, PiSettings.of(ctx).admission)
        admission = admission.with_provider(path=record.store_path, pin=record.pin,
                                            source_url=record.source_url)
        copy = place(record, policy, ctx.settings, ctx.private / DIST)
        if copy.remade:
            ctx.events.emit("provider.launch_copy_remade", changed=list(copy.remade),
                            why="the shared launch copy no longer hashed to the admitted "
                                "digests (an earlier run wrote through its links); made again "
                                "from the store")
        ctx.events.emit("gate.checked", gate="provider_digest", sha256=copy.tree_sha256,
                        entry_sha256=copy.entry_sha256, runtime_sha256=copy.runtime_sha256)
        ctx.events.emit("gate.checked", gate="provider_admitted", passed=True,
                        provenance_level=record.provenance_level, commit=record.pin)
        admitted = admission.with_provider(sha256=copy.tree_sha256, executed_path=str(copy.entry),
                                           provenance_level=record.provenance_level)
        return replace(admitted, status="admitted")

    def identity_runtime(self, ctx: RunContext) -> list[str]:
        return [str(NpmPaths(ctx.private / DIST).runtime)]

    def identity_readable(self, ctx: RunContext) -> list[Path]:
        program = NpmPaths(ctx.private / DIST)
        return [program.tree, program.runtime]

    # --- launch -------------------------------------------------------------------------------

    def prepare(self, ctx: RunContext, admission: Admission) -> Launch:
        state = ctx.private / STATE
        home, agent, tmp = state / "home", state / "agent", state / "tmp"
        for folder in (home, agent, tmp):
            folder.mkdir(parents=True, exist_ok=True)
        prompt = render_prompt(ctx.case.spec)
        (ctx.task_dir / "prompt.md").write_text(prompt, encoding="utf-8")
        if found := outside_paths([prompt], ctx.workspace):
            raise Blocked(BlockerCode.TASK_CONTRACT_INVALID,
                          f"the task names paths outside the workspace: {', '.join(found)}")
        model = admission.model
        access = model_access(ctx, admission, timeout_seconds=PiSettings.of(ctx).timeout_seconds)
        config = model_config(model.provider or "", access.base_url, access.key_variable or "")
        if config is not None:
            atomic_write_json(agent / "models.json", config)
            atomic_write_json(ctx.backend / "pi-models.json", config)
        entry = Path(admission.provider.executed_path or "")
        runtime = NpmPaths(ctx.private / DIST).runtime
        record = choose_admission(ctx.settings, self.policy(ctx), admission.provider.sha256)
        if sha256_file(entry) != record.origin.get("entry_sha256"):
            raise Blocked(BlockerCode.PROVIDER_NOT_ADMITTED,
                          "the entry point changed between hashing and launch",
                          marker="provider-not-admitted.txt")
        argv = [str(runtime), str(entry), "--print", "--mode", "json", "--no-session",
                "--provider", model.provider or "", "--model", model.model or "",
                "--no-extensions", "--no-skills", "--no-prompt-templates", "--no-themes",
                "--no-context-files", prompt]
        ctx.events.emit("provider.task.written", task_id=ctx.case.spec.id,
                        files=["task/prompt.md"])
        # pi must reach its model endpoint, and only that: the sandbox proxies exactly it. Its
        # program is read in place, never handed over (the tree is hard-linked from the store).
        return Launch(argv=argv, env=self._environment(ctx, home, agent, tmp, access),
                      cwd=ctx.workspace, timeout_seconds=PiSettings.of(ctx).timeout_seconds,
                      endpoint=access.endpoint,
                      readable=(NpmPaths(ctx.private / DIST).tree, runtime))

    def _environment(self, ctx: RunContext, home: Path, agent: Path, tmp: Path,
                     access: ModelAccess) -> dict[str, str]:
        return provider_environment(ctx, home, tmp, extra={
            "PI_CODING_AGENT_DIR": str(agent),
            # Offline start-up: no update check, no telemetry, no colour codes in its stream.
            "PI_OFFLINE": "1", "PI_SKIP_VERSION_CHECK": "1", "PI_TELEMETRY": "0", "NO_COLOR": "1",
            **access.environment})

    def live_log(self, ctx: RunContext) -> LiveLog:
        """pi's JSON lines as it prints them (the harness writes them to backend/stdout.log)."""
        return LiveLog(root=ctx.run_dir, folder="backend", prefix="stdout", suffix=".log",
                       parse=live_event)

    # --- after the run ------------------------------------------------------------------------

    def collect(self, ctx: RunContext, admission: Admission, result: ProcessResult) -> Outcome:
        endpoint = self.model_endpoint(ctx, admission)
        rows = LogRows(ctx.backend / "stdout.log")
        told = account(rows, iso(utc_now()), EVENT_LOG)
        claims: dict[str, Any] = {"recorded_not_trusted": True, **told.claims,
                                  "unreadable_event_lines": rows.bad}
        return Outcome(events=told.events, spans=told.spans, claims=claims,
                       provider_outcome=told.outcome, model_endpoint=endpoint,
                       forbidden=(*self._install_changed(ctx, admission),
                                  *self.credential_leaks(ctx, admission)))

    def _install_changed(self, ctx: RunContext, admission: Admission) -> tuple[ForbiddenAction, ...]:
        """The run's linked copy hashed again: a write through a link (into the launch copy
        other runs share) is named, and that copy dropped."""
        record = choose_admission(ctx.settings, self.policy(ctx), admission.provider.sha256)
        after = hashed(ctx.private / DIST, Path(admission.provider.executed_path or ""))
        if not (wrong := changed_parts(after, record)):
            return ()
        drop_launch_copy(record, ctx.settings)
        return (ForbiddenAction(action="installed_copy_changed", source="pi install",
                                detail=f"the {' and '.join(wrong)} changed while pi ran"),)

