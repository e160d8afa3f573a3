"""What an engine is: gates (admit), the launch it wants (prepare), and what it says afterwards
(collect). The run pipeline owns everything else: workspace, process, diff, verification, bundle."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from cto_harness.contracts import ForbiddenAction, ModelInfo, ProviderInfo
from cto_harness.core.events import EventLog
from cto_harness.core.fixtures import FixtureCase
from cto_harness.sandbox.process import ProcessResult
from cto_harness.settings import Settings


@dataclass
class RunContext:
    run_id: str
    nonce: str
    run_dir: Path
    case: FixtureCase
    settings: Settings
    harness_root: Path
    environ: Mapping[str, str]
    events: EventLog
    # Filled by the engine's gates as they pass, so a blocked report still says how far it got.
    provider: ProviderInfo = field(default_factory=lambda: ProviderInfo(name="unknown"))
    model: ModelInfo = field(default_factory=ModelInfo)
    admission_status: Literal["admitted", "not_admitted"] = "not_admitted"
    # Files the engine wrote as the task given to the provider (copied into the bundle's task/).
    task_files: list[Path] = field(default_factory=list)
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
        return self.run_dir / "task"


@dataclass
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    timeout_seconds: float
    file_size_limit: int | None = None
    # True when the provider must reach a network endpoint (Case's model): the sandbox then lets
    # it reach `endpoint` (or its model provider's public API) through the harness's proxy, and
    # nothing else. Everything else runs with loopback only.
    network: bool = False
    endpoint: str | None = None


@dataclass
class ProviderOutcome:
    """What the provider said about itself: recorded, never trusted."""

    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (ts, type, data)
    spans: list[dict[str, Any]] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)
    forbidden: list[ForbiddenAction] = field(default_factory=list)


class Engine(ABC):
    name: ClassVar[str]
    # Case runs are paired with a same-run fake baseline (DESIGN section 6, step 9).
    needs_baseline: ClassVar[bool] = False

    @abstractmethod
    def admit(self, ctx: RunContext) -> None:
        """Run every gate; raise `Blocked` at the first that fails. Nothing is launched yet."""

    @abstractmethod
    def prepare(self, ctx: RunContext) -> Launch:
        """Write the task file(s) and private inputs; return the one launch to run."""

    @abstractmethod
    def collect(self, ctx: RunContext, result: ProcessResult) -> ProviderOutcome:
        """Read the provider's own logs and claims after it exited (or was killed)."""

    def stage(self, settings: Settings) -> str:
        return "2"
