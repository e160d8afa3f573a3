"""Which model endpoint an engine's provider talks to, and how the harness knows its kind.

An engine's `<PREFIX>MODEL_ENDPOINT` setting (`engines/model.py`) chooses the mode; the kind
recorded in the report (`model.endpoint_kind`) follows from what the harness itself did, never
from the provider:

| mode | who answers | kind (= the admitted entry's `endpoint`) |
|---|---|---|
| `live` (default) | the admitted model (its `base_url`, or the provider's default) | `live` |
| `record` | the same, through a recording proxy the harness starts on loopback | `live` |
| `scripted` | a script set the harness serves on loopback | `scripted` |
| `replay` | a cassette the harness serves on loopback | `replay` |

For the three harness-started modes the provider gets a per-run key (the endpoint answers nobody
else) and the base URL is one value the engine computes (`start_endpoint`), so another
layer (a network namespace with a proxy) can swap it. In `record` mode the real credential stays
with the harness: the proxy sends it upstream, the provider never sees it.

Engines keep no per-run state, so the running endpoints live here, keyed by the run's folder:
`start_endpoint` (in `prepare`) adds one, `finish_endpoint` (in `collect`, and again in `release`
whatever happened) stops it, copies its log into `backend/` and forgets it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cto_harness.contracts import EndpointKind, ModelEndpointInfo
from cto_harness.engines.base import RunContext
from cto_harness.errors import Blocked, BlockerCode, UsageError
from cto_harness.fsutil import read_jsonl, resolve_within, sha256_file
from cto_harness.modelserver import (
    Cassette,
    CassetteError,
    EndpointConfig,
    ModelEndpoint,
    ScriptError,
    ScriptSet,
)
from cto_harness.modelserver.server import summary
from cto_harness.settings import CREDENTIAL_VARIABLES, secret_values

# Who answers the provider's model requests (the table above).
EndpointMode = Literal["live", "scripted", "replay", "record"]
SCRIPTS_DIR = "model-scripts"
# Where each model provider's API lives when no base URL is admitted (record mode's upstream),
# and the path its client appends to the base URL it is given.
DEFAULT_UPSTREAM = {"anthropic": "https://api.anthropic.com", "openai": "https://api.openai.com/v1"}
BASE_PATH = {"anthropic": "", "openai": "/v1"}
EXCHANGES = "model-exchanges.jsonl"
CASSETTE = "model-cassette.jsonl"


def endpoint_kind(mode: str) -> EndpointKind:
    return "live" if mode in ("live", "record") else mode  # type: ignore[return-value]


@dataclass
class EndpointPlan:
    """What the model gate decided: checked before anything is launched."""

    mode: str
    kind: EndpointKind
    provider: str
    scripts: ScriptSet | None = None
    cassette: Cassette | None = None
    upstream: str | None = None

    @property
    def harness_started(self) -> bool:
        return self.mode != "live"


def plan_endpoint(ctx: RunContext, provider: str, *, mode: str, script: str,
                  cassette: str | None, base_url: str | None,
                  cassette_variable: str) -> EndpointPlan:
    """Blocked `model_script_invalid` / `model_cassette_invalid` / `model_not_admitted` when the
    chosen endpoint cannot be set up; nothing is started here. `cassette_variable` is the
    engine's setting that names a cassette (for the message)."""
    kind = endpoint_kind(mode)
    plan = EndpointPlan(mode=mode, kind=kind, provider=provider)
    if mode in ("scripted", "replay", "record") and provider not in BASE_PATH:
        raise Blocked(BlockerCode.MODEL_NOT_ADMITTED, f"a {mode} endpoint speaks the Anthropic and OpenAI "
                      f"APIs only, not {provider!r}", marker="provider-model-not-admitted.txt")
    if mode == "scripted":
        root = ctx.harness_root / SCRIPTS_DIR
        try:
            folder = resolve_within(root, Path(ctx.case.spec.id) / script,
                                    what="script set")
            plan.scripts = ScriptSet.load(folder)
        except (ScriptError, UsageError, OSError) as exc:
            raise Blocked(BlockerCode.MODEL_SCRIPT_INVALID,
                          f"script set {script!r} for {ctx.case.spec.id}: {exc}") from None
    elif mode == "replay":
        if not cassette:
            raise Blocked(BlockerCode.MODEL_CASSETTE_INVALID,
                          f"a replay endpoint needs {cassette_variable} (a recorded cassette)")
        try:
            plan.cassette = Cassette(Path(cassette).absolute())
        except CassetteError as exc:
            raise Blocked(BlockerCode.MODEL_CASSETTE_INVALID, str(exc)) from None
    elif mode == "record":
        plan.upstream = base_url or DEFAULT_UPSTREAM[provider]
    return plan


class RunEndpoint:
    """The endpoint one run started: its URL, its key, its log; stopped by `finish`."""

    def __init__(self, plan: EndpointPlan, ctx: RunContext) -> None:
        self.plan = plan
        self.folder = ctx.private / "model-endpoint"  # harness-private, never provider-writable
        self.folder.mkdir(parents=True, exist_ok=True)
        self.token = f"cto-harness-run-{secrets.token_hex(16)}"
        self._endpoint: ModelEndpoint | None = None
        self._finished: ModelEndpointInfo | None = None

    @property
    def credential_variable(self) -> str:
        return CREDENTIAL_VARIABLES[self.plan.provider][0]

    def start(self, ctx: RunContext, volatile: dict[str, str], timeout_seconds: int) -> str:
        """Start serving; returns the base URL to give the provider."""
        plan = self.plan
        upstream_headers: dict[str, str] = {}
        if plan.mode == "record":
            upstream_headers = self._upstream_auth(ctx)
        config = EndpointConfig(
            mode=plan.mode,  # type: ignore[arg-type]
            scripts=plan.scripts, cassette=plan.cassette,
            record_to=self.folder / CASSETTE if plan.mode == "record" else None,
            upstream=plan.upstream, upstream_headers=upstream_headers, token=self.token,
            volatile=volatile, secrets=secret_values(ctx.environ),
            log_path=self.folder / EXCHANGES,
            # A backstop only: the run stops it (finish/release) long before.
            idle_timeout=float(timeout_seconds) + 60, parent_pid=os.getpid(),
        )
        self._endpoint = ModelEndpoint(config)
        url = self._endpoint.start()
        ctx.events.emit("model.endpoint.started", mode=plan.mode, kind=plan.kind, url=url)
        return url + BASE_PATH[plan.provider]

    def _upstream_auth(self, ctx: RunContext) -> dict[str, str]:
        names = CREDENTIAL_VARIABLES.get(self.plan.provider, ())
        present = [n for n in names if ctx.environ.get(n)]
        if not present:
            raise Blocked(BlockerCode.CREDENTIALS_MISSING, "record mode forwards to the live model: no "
                          f"credential in the environment ({', '.join(names)})",
                          marker="credentials-missing.txt")
        value = ctx.environ[present[0]]
        if present[0] == "ANTHROPIC_API_KEY":
            return {"x-api-key": value}
        return {"authorization": f"Bearer {value}"}

    def finish(self, ctx: RunContext) -> ModelEndpointInfo:
        """Stop serving (idempotent) and copy its log (and cassette) into `backend/`."""
        if self._finished is not None:
            return self._finished
        if self._endpoint is not None:
            self._endpoint.stop("the run is over")
        plan = self.plan
        fields: dict[str, object] = {
            "mode": plan.mode, "started_by_harness": True, "upstream": plan.upstream,
            "url": self._endpoint.url if self._endpoint is not None else None,
        }
        if plan.scripts is not None:
            fields |= {"script_set": plan.scripts.name, "script_files": list(plan.scripts.files),
                       "script_digest": plan.scripts.digest}
        if plan.cassette is not None:
            fields["cassette_sha256"] = plan.cassette.digest
        log = self.folder / EXCHANGES
        if log.is_file():
            shutil.copyfile(log, ctx.backend / EXCHANGES)
            counts = summary(read_jsonl(log)[0])
            # The endpoint's own count: its log stops growing at its cap, the requests do not.
            requests = (self._endpoint.stats.requests if self._endpoint is not None
                        else int(counts["requests"]))
            fields |= {"log": f"backend/{EXCHANGES}", "requests": requests,
                       "errors": list(counts["errors"])}
        cassette = self.folder / CASSETTE
        if plan.mode == "record" and cassette.is_file():
            shutil.copyfile(cassette, ctx.backend / CASSETTE)
            fields |= {"cassette": f"backend/{CASSETTE}",
                       "cassette_sha256": sha256_file(ctx.backend / CASSETTE)}
        info = ModelEndpointInfo.model_validate(fields)
        self._finished = info
        ctx.events.emit("model.endpoint.stopped", mode=plan.mode, requests=info.requests,
                        errors=len(info.errors))
        return info


_RUNNING: dict[Path, RunEndpoint] = {}
_LOCK = threading.Lock()


def start_endpoint(ctx: RunContext, plan: EndpointPlan, volatile: dict[str, str],
                   timeout_seconds: int) -> tuple[str, tuple[str, str]]:
    """Start the run's endpoint; returns the base URL and (credential variable, per-run key)."""
    endpoint = RunEndpoint(plan, ctx)
    with _LOCK:
        if ctx.run_dir in _RUNNING:
            raise RuntimeError(f"a model endpoint already runs for {ctx.run_dir}")
        _RUNNING[ctx.run_dir] = endpoint
    url = endpoint.start(ctx, volatile, timeout_seconds)
    return url, (endpoint.credential_variable, endpoint.token)


def finish_endpoint(ctx: RunContext) -> ModelEndpointInfo | None:
    """Stop the run's endpoint and forget it (None: the harness started none). Idempotent."""
    with _LOCK:
        endpoint = _RUNNING.pop(ctx.run_dir, None)
    return endpoint.finish(ctx) if endpoint is not None else None
