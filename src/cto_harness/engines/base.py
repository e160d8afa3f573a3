"""The engine API: what an engine declares, and three typed stages that hand values on.

    admit(ctx) -> Admission                      every gate, in order; `Blocked` at the first
    prepare(ctx, admission) -> Launch            the task files, and the one launch to run
    collect(ctx, admission, result) -> Outcome   the provider's own account, after it exited

The run pipeline (`core/run.py`) owns everything else (workspace, isolation, process, diff,
verification, baseline, bundle) and builds the report from these values. An engine keeps no
per-run state: what a later stage needs travels in the `Admission`, or is recomputed from the
context (its private folders under `ctx.private` are fixed paths).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from cto_harness.config import engine_table_origin, engine_tables
from cto_harness.contracts import (
    ForbiddenAction,
    LocalPullRequest,
    ModelEndpointInfo,
    ModelInfo,
    PhaseOutcome,
    ProviderInfo,
    ProviderOutcome,
)
from cto_harness.core.events import EventLog
from cto_harness.core.fixtures import FixtureCase
from cto_harness.errors import Blocked
from cto_harness.sandbox.launch import Launch
from cto_harness.sandbox.process import ProcessResult
from cto_harness.settings import Settings, SettingsBase, SettingsConfigDict, default_home


class EngineSettings(SettingsBase):
    """An engine's own settings: subclass it with the engine's fields and its env prefix."""

    model_config = SettingsConfigDict(env_prefix="CTO_HARNESS_ENGINE_")

    def run_stage(self) -> str:
        """The stage the report records (DESIGN section 6: only Stage 2 exists)."""
        return "2"

    @classmethod
    def of(cls, ctx: RunContext) -> Self:
        """The run's engine settings as this model (an engine reads its own: `CaseSettings.of`)."""
        settings = ctx.engine_settings
        if not isinstance(settings, cls):
            raise TypeError(f"the run's engine settings are {type(settings).__name__}, "
                            f"not {cls.__name__}")
        return settings


@dataclass(frozen=True)
class RunContext:
    """Everything an engine may know about the run; the same object for all three stages."""

    run_id: str
    nonce: str
    run_dir: Path
    case: FixtureCase
    settings: Settings  # the core's
    engine_settings: EngineSettings  # the engine's own (`Engine.settings_model`)
    harness_root: Path
    environ: Mapping[str, str]
    events: EventLog  # the run's event recorder (append-only)
    # False when the sandbox cannot give the provider a network namespace (`network: shared`):
    # an endpoint is then reached at its own address, not through the harness's proxy.
    network_isolated: bool = True

    @property
    def workspace(self) -> Path:
        return self.run_dir / "workspace"

    @property
    def private(self) -> Path:
        """Run-private state the provider may use (homes, data dir, remote); not in the bundle."""
        return self.run_dir / "private"

    @property
    def backend(self) -> Path:
        return self.run_dir / "backend"

    @property
    def task_dir(self) -> Path:
        """The bundle's task/: the exact files given to the provider are copied here."""
        return self.run_dir / "task"


@dataclass(frozen=True)
class Admission:
    """What the gates established: the provider that will run (its hashed copy), the model, the
    names (never values) of the credential variables it gets."""

    provider: ProviderInfo
    model: ModelInfo = field(default_factory=ModelInfo)
    status: Literal["admitted", "not_admitted"] = "not_admitted"
    credentials: tuple[str, ...] = ()

    def with_provider(self, **changes: Any) -> Admission:
        """This admission with provider fields changed (a copy: values are never mutated)."""
        return replace(self, provider=self.provider.model_copy(update=changes))


Gate = Callable[[RunContext, Admission], Admission]


class GateBlocked(Blocked):
    """A gate refused; carries the admission as far as it got, so a blocked report shows it."""

    def __init__(self, blocked: Blocked, admission: Admission) -> None:
        super().__init__(blocked.code, blocked.message, marker=blocked.marker)
        self.admission = admission


def run_gates(ctx: RunContext, admission: Admission, gates: Sequence[Gate]) -> Admission:
    """Pass `admission` through each gate in order; the first `Blocked` stops it (wrapped in
    `GateBlocked` with what had been established before that gate)."""
    for gate in gates:
        try:
            admission = gate(ctx, admission)
        except GateBlocked:
            raise
        except Blocked as blocked:
            raise GateBlocked(blocked, admission) from blocked
    return admission


@dataclass(frozen=True)
class ProviderEvent:
    """One event of the provider's own log, mapped to a dotted type (`provider.phase.ended`)."""

    ts: str
    type: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderSpan:
    """One span of the provider's own work; `parent_key` names another span's `key` (or none:
    a child of the provider process span)."""

    key: str
    name: str
    start: str
    end: str
    status: Literal["ok", "error", "unset"] = "ok"
    parent_key: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What the provider said about itself, and what the engine saw it attempt: recorded, never
    trusted (the verdict comes from the harness's own diff and verification)."""

    events: tuple[ProviderEvent, ...] = ()
    spans: tuple[ProviderSpan, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)
    forbidden: tuple[ForbiddenAction, ...] = ()
    provider_outcome: ProviderOutcome = field(default_factory=ProviderOutcome)
    # Pull requests the provider opened against the run's local bare remote (never a real host).
    pull_requests: tuple[LocalPullRequest, ...] = ()
    # The model endpoint the engine started for this run, as the harness saw it once stopped
    # (requests, errors, logs): merged into the report's `model.endpoint`.
    model_endpoint: ModelEndpointInfo | None = None


@dataclass(frozen=True)
class LiveLog:
    """Where the provider's own event log grows while it runs, for the live progress line
    (`core/live.py`): the newest file `folder/<prefix>*<suffix>` under `root` (read by
    descriptors, no link followed), one JSON object a line, each mapped by `parse` into the
    engine API's event vocabulary (`provider.phase.started`, `provider.tool.started`, ...).
    Shown to the person watching, never recorded: the bundle's copy is read by `collect`."""

    root: Path
    folder: str
    prefix: str
    suffix: str
    parse: Callable[[Mapping[str, Any]], ProviderEvent | None]


def provider_outcome_of(events: Sequence[ProviderEvent], source: str | None) -> ProviderOutcome:
    """The provider's own outcome from its mapped events: the last `provider.pipeline.ended`
    and every `provider.phase.ended`."""
    ended = [e for e in events if e.type == "provider.pipeline.ended"]
    last = ended[-1].data if ended else {}
    phases = [PhaseOutcome(phase=str(e.data.get("phase", "")),
                           agent=_text(e.data.get("agent")), outcome=_text(e.data.get("outcome")))
              for e in events if e.type == "provider.phase.ended"]
    return ProviderOutcome(outcome=_text(last.get("outcome")),
                           failed_agent=_text(last.get("failedAgent")), phases=phases,
                           source=source if (ended or phases) else None)


def _text(value: object) -> str | None:
    return None if value is None else str(value)[:200]


class Engine(ABC):
    """An engine: a name, its declarations, and the three stages. Subclasses are registered in
    `cto_harness.engines` (built-in) or by an entry point (group `cto_harness.engines`)."""

    name: ClassVar[str]
    # Its own settings model (env prefix `CTO_HARNESS_<NAME>_`), loaded once per run.
    settings_model: ClassVar[type[EngineSettings]] = EngineSettings
    # The provider policy it is admitted under: harness/providers/<provider>/policy.toml.
    provider: ClassVar[str | None] = None
    # Top-level workspace folders the provider keeps its own records in: listed apart from source
    # changes, never judged against the allowed paths, left out of the verification copy.
    bookkeeping_dirs: ClassVar[tuple[str, ...]] = ()
    # Paired with a same-run fake baseline (DESIGN section 6, step 9).
    needs_baseline: ClassVar[bool] = False
    # Must reach a network endpoint (its model): the sandbox proxies exactly `Launch.endpoint`.
    needs_network: ClassVar[bool] = False

    def load_settings(self, environ: Mapping[str, str], *, flags: Mapping[str, Any] | None = None,
                      home: Path | None = None) -> EngineSettings:
        """Its settings: flag > the run's environment > config.toml's `[engine.<name>]` >
        default (a bad value: `UsageError`, exit 64, naming where it came from)."""
        home = home if home is not None else default_home(environ).absolute()
        return self.settings_model.load(
            environ, flags=flags, config=engine_tables(home).get(self.name),
            config_origin=engine_table_origin(home, self.name))

    def provider_configured(self, settings: EngineSettings) -> bool | None:
        """For `health`: is a real provider configured? None for an engine that ships inside
        the harness (nothing to configure)."""
        return None

    @abstractmethod
    def admit(self, ctx: RunContext) -> Admission:
        """Run every gate; raise `Blocked` (best: through `run_gates`) at the first that fails.
        Nothing is launched yet."""

    @abstractmethod
    def prepare(self, ctx: RunContext, admission: Admission) -> Launch:
        """Write the task file(s) (copies in `ctx.task_dir`) and private inputs; return the one
        launch to run. May still raise `Blocked` (e.g. `task_contract_invalid`)."""

    @abstractmethod
    def collect(self, ctx: RunContext, admission: Admission, result: ProcessResult) -> Outcome:
        """Read the provider's own logs and claims after it exited (or was killed)."""

    def live_log(self, ctx: RunContext) -> LiveLog | None:
        """Where the provider's event log grows while it runs (None: no live view of it)."""
        return None

    def release(self, ctx: RunContext) -> None:
        """Stop whatever `prepare` started besides the provider (a model endpoint). The pipeline
        calls it once the run is over, whatever happened; it must be safe when nothing was
        started. Whatever it tracks is keyed by the run (`ctx.run_dir`), never kept on `self`."""
        return None


__all__ = [
    "Admission",
    "Engine",
    "EngineSettings",
    "Gate",
    "GateBlocked",
    "Launch",
    "LiveLog",
    "Outcome",
    "ProviderEvent",
    "ProviderSpan",
    "RunContext",
    "provider_outcome_of",
    "run_gates",
]
