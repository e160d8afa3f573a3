"""The model an engine's provider talks to: its settings, its gates and its endpoint, shared by
every engine whose provider asks a model (Case, pi).

- `ModelSettings`: the model fields of an engine's settings, under the engine's prefix
  (`<PREFIX>MODEL_PROVIDER`, `MODEL`, `MODEL_BASE_URL`, `MODEL_ENDPOINT`, `MODEL_SCRIPT`,
  `MODEL_CASSETTE`).
- Gates (for `run_gates`): `requested_model` (recorded for the report), `admitted_model` (the
  pair, its base URL and its endpoint kind admitted by the engine's policy, else
  `model_not_admitted`; `model_script_invalid` / `model_cassette_invalid` from the endpoint
  plan), `credentials_present` (a live endpoint only: else `credentials_missing`).
- `model_access` (in `prepare`): starts the harness's endpoint when one is chosen and returns
  the base URL and the credential environment the provider gets: a per-run key for the
  harness's endpoint, the operator's variables (names recorded, values never) for a live one.
- `AgentEngine`: the base of such an engine: paired with a fake baseline, on the network, its
  policy (`policy`), the `--help` probe of the copy that will run (`_identity`), its model gates
  in order (`model_gates`), its endpoint stopped in `collect` (`model_endpoint`) and again in
  `release`, and the scan for a credential it was given in what it wrote (`credential_leaks`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from cto_harness.contracts import ForbiddenAction, ModelEndpointInfo, ModelInfo
from cto_harness.engines.base import Admission, Engine, EngineSettings, Gate, RunContext
from cto_harness.engines.disclosure import credential_disclosures
from cto_harness.engines.endpoint import (
    EndpointMode,
    EndpointPlan,
    finish_endpoint,
    plan_endpoint,
    start_endpoint,
)
from cto_harness.engines.provider import engine_policy, identity_gate
from cto_harness.errors import Blocked, BlockerCode
from cto_harness.providers import ProviderPolicy
from cto_harness.sandbox.netproxy import model_endpoint, sandbox_base_url
from cto_harness.settings import CREDENTIAL_VARIABLES

MODEL_MARKER = "provider-model-not-admitted.txt"


class ModelSettings(EngineSettings):
    """The model fields an engine's settings add (its `env_prefix` names the variables)."""

    model_provider: str | None = Field(default=None, description="anthropic or openai")
    model: str | None = Field(default=None, description="the model id")
    model_base_url: str | None = Field(default=None, description="the admitted endpoint")
    model_endpoint: EndpointMode = Field(
        default="live", description="live, scripted, replay or record (who answers the model)")
    model_script: str = Field(default="happy", pattern=r"^[a-z0-9][a-z0-9-]*$",
                              description="the script set harness/model-scripts/<case>/<set>/")
    model_cassette: str | None = Field(default=None, description="the cassette a replay serves")


def endpoint_plan(ctx: RunContext) -> EndpointPlan:
    """The endpoint the settings choose, checked (recomputed per stage, never kept: engines hold
    no per-run state). Blocked `model_script_invalid` / `model_cassette_invalid`."""
    s = ModelSettings.of(ctx)
    return plan_endpoint(ctx, s.model_provider or "", mode=s.model_endpoint,
                         script=s.model_script, cassette=s.model_cassette,
                         base_url=s.model_base_url, cassette_variable=s.setting_name("model_cassette"))


def requested_model(ctx: RunContext, admission: Admission) -> Admission:
    """Gate: records what was asked for (a blocked report shows it), refuses nothing."""
    s = ModelSettings.of(ctx)
    return replace(admission, model=ModelInfo(provider=s.model_provider, model=s.model,
                                              base_url=s.model_base_url))


def admitted_model(ctx: RunContext, admission: Admission, policy: ProviderPolicy) -> Admission:
    """Gate: the model, its base URL and its endpoint's kind must be one `policy` admits."""
    s = ModelSettings.of(ctx)
    if not s.model_provider or not s.model:
        raise Blocked(BlockerCode.MODEL_NOT_ADMITTED,
                      f"both {s.setting_name('model_provider')} and {s.setting_name('model')} are "
                      "required", marker=MODEL_MARKER)
    plan = endpoint_plan(ctx)
    if plan.mode in ("scripted", "replay") and s.model_base_url:
        raise Blocked(BlockerCode.MODEL_NOT_ADMITTED,
                      f"a {plan.mode} endpoint is started by the harness on loopback: "
                      f"{s.setting_name('model_base_url')} must be unset", marker=MODEL_MARKER)
    if policy.admitted_model(s.model_provider, s.model, s.model_base_url,
                             endpoint=plan.kind) is None:
        where = f" at {s.model_base_url}" if s.model_base_url else ""
        raise Blocked(BlockerCode.MODEL_NOT_ADMITTED,
                      f"model {s.model_provider}/{s.model}{where} with a {plan.kind} endpoint "
                      f"is not admitted by the {policy.name} policy", marker=MODEL_MARKER)
    ctx.events.emit("gate.checked", gate="model_admitted", passed=True,
                    provider=s.model_provider, model=s.model, endpoint_kind=plan.kind,
                    endpoint_mode=plan.mode)
    return replace(admission, model=admission.model.model_copy(
        update={"admitted": True, "endpoint_kind": plan.kind}))


def credentials_present(ctx: RunContext, admission: Admission) -> Admission:
    """Gate: a live model needs the operator's credential in the environment (its variables'
    names travel in the admission; a value is never written anywhere). A scripted or replayed
    endpoint asks no real model: the provider gets a per-run key instead."""
    mode = ModelSettings.of(ctx).model_endpoint
    if mode in ("scripted", "replay"):
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
    return replace(admission, credentials=present)


@dataclass(frozen=True)
class ModelAccess:
    """How the provider reaches its model: the base URL (None: its provider's own default, for
    an admitted live model without one) and the credential variables it gets."""

    base_url: str | None
    environment: Mapping[str, str] = field(default_factory=dict)
    # The one upstream the sandbox's proxy forwards to (`Launch.endpoint`): the harness's own
    # endpoint, the admitted base URL, or the model provider's public API.
    endpoint: str | None = None

    @property
    def key_variable(self) -> str | None:
        """The variable holding the key (a provider's config names it, never its value)."""
        return next(iter(self.environment), None)


def model_access(ctx: RunContext, admission: Admission, *, timeout_seconds: int,
                 volatile: Mapping[str, str] | None = None) -> ModelAccess:
    """Start the harness's endpoint if the settings chose one (stopped by `finish_endpoint`; it
    outlives `timeout_seconds`, the provider's limit, only as a backstop). `volatile` adds values
    the endpoint replaces in its scripts and logs (the workspace and the run folder always)."""
    plan = endpoint_plan(ctx)
    if not plan.harness_started:
        url = admission.model.base_url
        environment = {name: ctx.environ[name] for name in admission.credentials}
    else:
        run_dir = ctx.run_dir.resolve()
        values = {"WORKSPACE": str(ctx.workspace.resolve()), "RUN_DIR": str(run_dir)}
        if str(ctx.run_dir) != str(run_dir):
            values["RUN_DIR_LINK"] = str(ctx.run_dir)
        url, (variable, key) = start_endpoint(ctx, plan, values | dict(volatile or {}),
                                              timeout_seconds)
        # The harness's endpoint: a per-run key, never the operator's credential.
        environment = {variable: key}
    # Inside its network namespace the provider reaches the endpoint through the sandbox's
    # forwarder (sandbox/netproxy.py), at the address that gives it.
    given = sandbox_base_url(url) if ctx.network_isolated else url
    return ModelAccess(given, environment, model_endpoint(url, admission.model.provider))


class AgentEngine(Engine):
    """An engine whose provider is a third-party coding agent that asks a model (Case, pi)."""

    # Paired with a same-run fake baseline (DESIGN section 6, step 9).
    needs_baseline = True
    # It must reach its model endpoint: the sandbox shares the network, recorded as such.
    needs_network = True
    # The distribution kind its policy must be of (None: any).
    policy_kind: ClassVar[str | None] = None

    def policy(self, ctx: RunContext) -> ProviderPolicy:
        """Its policy, `harness/providers/<provider>/policy.toml` (`provider_policy_invalid`)."""
        return engine_policy(ctx, self.provider or self.name, kind=self.policy_kind)

    def identity_runtime(self, ctx: RunContext) -> Sequence[str]:
        """The argv prefix that runs its executable (a script entry point's runtime; none)."""
        return ()

    def identity_readable(self, ctx: RunContext) -> Sequence[Path]:
        """What the confined `--help` probe may read besides the executable (none)."""
        return ()

    def _identity(self, ctx: RunContext, admission: Admission) -> Admission:
        """Gate `identity_mismatch`: `--help` on `admission.provider.executed_path`, confined."""
        return identity_gate(ctx, admission, self.policy(ctx), runtime=self.identity_runtime(ctx),
                             readable=self.identity_readable(ctx))

    def model_gates(self) -> tuple[Gate, ...]:
        """The model's gates, in order, after the engine's own provider gates."""
        return (requested_model, self._model, credentials_present)

    def _model(self, ctx: RunContext, admission: Admission) -> Admission:
        return admitted_model(ctx, admission, self.policy(ctx))

    @staticmethod
    def model_endpoint(ctx: RunContext, admission: Admission) -> ModelEndpointInfo:
        """For `collect`: stop the run's endpoint (if the harness started one) and say who
        answered the model."""
        return finish_endpoint(ctx) or ModelEndpointInfo(mode="live", url=admission.model.base_url)

    def release(self, ctx: RunContext) -> None:
        finish_endpoint(ctx)

    @staticmethod
    def credential_leaks(ctx: RunContext, admission: Admission) -> list[ForbiddenAction]:
        """A credential it was given, in anything it wrote (its logs and records in `backend/`,
        the workspace but its `.git`): a disclosure, whatever else happened."""
        return credential_disclosures(ctx.environ, list(admission.credentials), [
            (ctx.backend, "backend", frozenset()),
            (ctx.workspace, "workspace", frozenset({b".git"}))])


__all__ = [
    "AgentEngine",
    "ModelAccess",
    "ModelSettings",
    "admitted_model",
    "credentials_present",
    "endpoint_plan",
    "model_access",
    "requested_model",
]
