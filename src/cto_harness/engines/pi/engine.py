"""The pi engine: `@mariozechner/pi-coding-agent` (MIT), admitted from npm at the policy's pinned
version (`harness/providers/pi/policy.toml`, kind `npm`), run non-interactively under its admitted
Bun: `<bun> <entry> --print --mode json --no-session ... <prompt>`.

Gates, in order (each `Blocked(code)`, exit 2, a full bundle): `provider_unavailable` (no
admitted install at the policy's version, or the one `CTO_HARNESS_PI_ADMISSION` names),
`provider_not_admitted` (the run's linked copy of the tree, entry point and runtime re-hashed
against the record), `identity_mismatch` (`pi --help` on that copy), `model_not_admitted`,
`credentials_missing` (a live endpoint only: a scripted or replayed endpoint, which the harness
starts on loopback from `harness/model-scripts/<case>/<set>/` or a cassette, gets a per-run key;
the endpoint is the Case engine's, `engines/case/endpoint.py`). Then pi runs in the workspace with
a private HOME and agent dir (its `models.json` points the model provider at the base URL; the key
goes by variable name), no extensions, skills, prompt templates, themes or context files, no
session file, offline start-up (no update check, no telemetry). Its JSON event stream (stdout) is
read back as its own account: recorded, never trusted.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from cto_harness.clock import iso, utc_now
from cto_harness.contracts import ModelEndpointInfo, ModelInfo, ProviderInfo
from cto_harness.core.taskscan import outside_paths
from cto_harness.engines.base import (
    Admission,
    Engine,
    EngineSettings,
    Launch,
    Outcome,
    RunContext,
    run_gates,
)
from cto_harness.engines.case.endpoint import (
    EndpointPlan,
    finish_endpoint,
    plan_endpoint,
    start_endpoint,
)
from cto_harness.engines.pi.events import account, read_lines
from cto_harness.engines.pi.install import choose_admission, place
from cto_harness.engines.pi.prompt import model_config, render_prompt
from cto_harness.errors import Blocked, BlockerCode, PolicyInvalid
from cto_harness.fsutil import atomic_write_json, sha256_file
from cto_harness.git import git_env
from cto_harness.providers import (
    IdentityMismatch,
    ProviderPolicy,
    default_policy_path,
    load_policy,
    probe_binary_identity,
)
from cto_harness.providers.npm import NpmDistribution, NpmPaths
from cto_harness.sandbox.process import ProcessResult
from cto_harness.settings import CREDENTIAL_VARIABLES, PositiveWhole

EVENT_LOG = "backend/stdout.log"
EndpointMode = Literal["live", "scripted", "replay", "record"]


class PiSettings(EngineSettings):
    """`CTO_HARNESS_PI_*`."""

    model_config = SettingsConfigDict(env_prefix="CTO_HARNESS_PI_")

    admission: str | None = Field(
        default=None, description="SHA-256 (or prefix) of the admitted install to run "
        "(default: the newest admitted at the policy's version)")
    timeout_seconds: PositiveWhole = Field(default=900, description="pi's time limit")
    model_provider: str | None = Field(default=None, description="anthropic or openai")
    model: str | None = Field(default=None, description="the model id")
    model_base_url: str | None = Field(default=None, description="the admitted endpoint")
    model_endpoint: EndpointMode = Field(
        default="live", description="live, scripted, replay or record (who answers the model)")
    model_script: str = Field(default="pi-happy", pattern=r"^[a-z0-9][a-z0-9-]*$",
                              description="the script set harness/model-scripts/<case>/<set>/")
    model_cassette: str | None = Field(default=None, description="the cassette a replay serves")


def _settings(ctx: RunContext) -> PiSettings:
    settings = ctx.engine_settings
    assert isinstance(settings, PiSettings)
    return settings


class PiEngine(Engine):
    name = "pi"
    settings_model = PiSettings
    provider = "pi"
    needs_baseline = True
    # pi must reach its model endpoint: the sandbox shares the network, recorded as such.
    needs_network = True

    def provider_configured(self, settings: EngineSettings) -> bool | None:
        return None  # admitted from the registry, not configured by a path

    # --- paths of the run's private state ---------------------------------------------------

    @staticmethod
    def _dist(ctx: RunContext) -> Path:
        return ctx.private / "pi-dist"

    @staticmethod
    def _state(ctx: RunContext) -> Path:
        return ctx.private / "pi"

    # --- gates --------------------------------------------------------------------------------

    def admit(self, ctx: RunContext) -> Admission:
        return run_gates(ctx, Admission(provider=ProviderInfo(name="pi")), (
            self._installed, self._identity, self._requested_model, self._model,
            self._credentials,
        ))

    def _policy(self, ctx: RunContext) -> ProviderPolicy:
        try:
            policy = load_policy(default_policy_path(ctx.harness_root, self.provider or "pi"))
        except PolicyInvalid as exc:
            raise Blocked(BlockerCode.PROVIDER_POLICY_INVALID, str(exc)) from None
        if not isinstance(policy.distribution, NpmDistribution):
            raise Blocked(BlockerCode.PROVIDER_POLICY_INVALID,
                          f"the {policy.name} policy is not of the npm kind")
        return policy

    def _installed(self, ctx: RunContext, admission: Admission) -> Admission:
        policy = self._policy(ctx)
        record = choose_admission(ctx.settings, policy, _settings(ctx).admission)
        admission = admission.with_provider(path=record.store_path, pin=record.pin,
                                            source_url=record.source_url)
        copy = place(record, policy, self._dist(ctx))
        ctx.events.emit("gate.checked", gate="provider_digest", sha256=copy.tree_sha256,
                        entry_sha256=copy.entry_sha256, runtime_sha256=copy.runtime_sha256)
        ctx.events.emit("gate.checked", gate="provider_admitted", passed=True,
                        provenance_level=record.provenance_level, commit=record.pin)
        admitted = admission.with_provider(sha256=copy.tree_sha256, executed_path=str(copy.entry),
                                           provenance_level=record.provenance_level)
        return replace(admitted, status="admitted")

    def _identity(self, ctx: RunContext, admission: Admission) -> Admission:
        policy = self._policy(ctx)
        runtime = NpmPaths(self._dist(ctx)).runtime
        try:
            evidence = probe_binary_identity(Path(admission.provider.executed_path or ""),
                                             policy, runtime=[str(runtime)])
        except IdentityMismatch as mismatch:
            atomic_write_json(ctx.backend / "provider-identity.json",
                              mismatch.evidence.model_dump(mode="json"))
            raise
        except Blocked as blocked:
            raise Blocked(BlockerCode.IDENTITY_MISMATCH, blocked.message) from None
        atomic_write_json(ctx.backend / "provider-identity.json", evidence.model_dump(mode="json"))
        ctx.events.emit("gate.checked", gate="provider_identity", passed=True,
                        help_sha256=evidence.help_sha256)
        return admission

    def _requested_model(self, ctx: RunContext, admission: Admission) -> Admission:
        s = _settings(ctx)
        return replace(admission, model=ModelInfo(provider=s.model_provider, model=s.model,
                                                  base_url=s.model_base_url))

    def _model(self, ctx: RunContext, admission: Admission) -> Admission:
        s = _settings(ctx)
        if not s.model_provider or not s.model:
            raise Blocked(BlockerCode.MODEL_NOT_ADMITTED,
                          "both CTO_HARNESS_PI_MODEL_PROVIDER and CTO_HARNESS_PI_MODEL are "
                          "required", marker="provider-model-not-admitted.txt")
        plan = self._plan(ctx)
        if plan.mode in ("scripted", "replay") and s.model_base_url:
            raise Blocked(BlockerCode.MODEL_NOT_ADMITTED,
                          f"a {plan.mode} endpoint is started by the harness on loopback: "
                          "CTO_HARNESS_PI_MODEL_BASE_URL must be unset",
                          marker="provider-model-not-admitted.txt")
        if self._policy(ctx).admitted_model(s.model_provider, s.model, s.model_base_url,
                                            endpoint=plan.kind) is None:
            where = f" at {s.model_base_url}" if s.model_base_url else ""
            raise Blocked(BlockerCode.MODEL_NOT_ADMITTED,
                          f"model {s.model_provider}/{s.model}{where} with a {plan.kind} "
                          "endpoint is not admitted by the pi policy",
                          marker="provider-model-not-admitted.txt")
        ctx.events.emit("gate.checked", gate="model_admitted", passed=True,
                        provider=s.model_provider, model=s.model, endpoint_kind=plan.kind,
                        endpoint_mode=plan.mode)
        return replace(admission, model=admission.model.model_copy(
            update={"admitted": True, "endpoint_kind": plan.kind}))

    def _plan(self, ctx: RunContext) -> EndpointPlan:
        """The endpoint the settings choose (recomputed per stage: engines keep no state)."""
        s = _settings(ctx)
        return plan_endpoint(ctx, s.model_provider or "", mode=s.model_endpoint,
                             script=s.model_script, cassette=s.model_cassette,
                             base_url=s.model_base_url)

    def _credentials(self, ctx: RunContext, admission: Admission) -> Admission:
        mode = _settings(ctx).model_endpoint
        if mode in ("scripted", "replay"):
            # No real model is asked: pi gets a per-run key for the harness's endpoint.
            ctx.events.emit("gate.checked", gate="credentials_present", passed=True,
                            variables=[], reason=f"{mode} endpoint: a per-run key")
            return admission
        provider = admission.model.provider or ""
        names = CREDENTIAL_VARIABLES.get(provider, ())
        present = tuple(n for n in names if ctx.environ.get(n))
        if not present:
            wanted = ", ".join(names) or "none known for this model provider"
            raise Blocked(BlockerCode.CREDENTIALS_MISSING,
                          f"no credential for model provider {provider!r} in the environment "
                          f"({wanted})", marker="credentials-missing.txt")
        ctx.events.emit("gate.checked", gate="credentials_present", passed=True,
                        variables=list(present))
        return replace(admission, credentials=present[:1])

    # --- launch -------------------------------------------------------------------------------

    def prepare(self, ctx: RunContext, admission: Admission) -> Launch:
        state = self._state(ctx)
        home, agent, tmp = state / "home", state / "agent", state / "tmp"
        for folder in (home, agent, tmp):
            folder.mkdir(parents=True, exist_ok=True)
        prompt = render_prompt(ctx.case.spec)
        (ctx.task_dir / "prompt.md").write_text(prompt, encoding="utf-8")
        if found := outside_paths([prompt], ctx.workspace):
            raise Blocked(BlockerCode.TASK_CONTRACT_INVALID,
                          f"the task names paths outside the workspace: {', '.join(found)}")
        model = admission.model
        base_url, key = self._start_endpoint(ctx, admission)
        variable = key[0] if key is not None else admission.credentials[0]
        config = model_config(model.provider or "", base_url, variable)
        if config is not None:
            atomic_write_json(agent / "models.json", config)
            atomic_write_json(ctx.backend / "pi-models.json", config)
        entry = Path(admission.provider.executed_path or "")
        runtime = NpmPaths(self._dist(ctx)).runtime
        record = choose_admission(ctx.settings, self._policy(ctx), admission.provider.sha256)
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
        env = self._environment(ctx, admission, home, agent, tmp, key)
        return Launch(argv=argv, env=env, cwd=ctx.workspace,
                      timeout_seconds=_settings(ctx).timeout_seconds)

    def _start_endpoint(self, ctx: RunContext, admission: Admission
                        ) -> tuple[str | None, tuple[str, str] | None]:
        """The base URL pi gets (None: its provider's default for an admitted live model without
        one) and, for an endpoint the harness started, its (variable, per-run key)."""
        plan = self._plan(ctx)
        if not plan.harness_started:
            return admission.model.base_url, None
        volatile = {"WORKSPACE": str(ctx.workspace.resolve()), "RUN_DIR": str(ctx.run_dir.resolve())}
        return start_endpoint(ctx, plan, volatile, _settings(ctx).timeout_seconds)

    def _environment(self, ctx: RunContext, admission: Admission, home: Path, agent: Path,
                     tmp: Path, key: tuple[str, str] | None) -> dict[str, str]:
        env = git_env(home)
        env.pop("LC_ALL", None)
        env |= {
            "PATH": ctx.environ.get("PATH") or os.defpath,
            "HOME": str(home),
            "PI_CODING_AGENT_DIR": str(agent),
            "PI_OFFLINE": "1", "PI_SKIP_VERSION_CHECK": "1", "PI_TELEMETRY": "0",
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "LANG": "C.UTF-8", "TMPDIR": str(tmp), "GIT_TERMINAL_PROMPT": "0", "NO_COLOR": "1",
            # The fixture's Python tests: no byte-code caches in the workspace.
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp / "pycache"),
        }
        if key is not None:  # the harness's endpoint: a per-run key, never the operator's
            env[key[0]] = key[1]
            return env
        for name in admission.credentials:
            env[name] = ctx.environ[name]
        return env

    # --- after the run ------------------------------------------------------------------------

    def release(self, ctx: RunContext) -> None:
        finish_endpoint(ctx)

    def collect(self, ctx: RunContext, admission: Admission, result: ProcessResult) -> Outcome:
        endpoint = finish_endpoint(ctx) or ModelEndpointInfo(mode="live",
                                                             url=admission.model.base_url)
        rows, bad = read_lines(ctx.backend / "stdout.log")
        told = account(rows, iso(utc_now()), EVENT_LOG)
        claims: dict[str, Any] = {"recorded_not_trusted": True, **told.claims,
                                  "unreadable_event_lines": bad}
        return Outcome(events=told.events, spans=told.spans, claims=claims,
                       provider_outcome=told.outcome, model_endpoint=endpoint)

