"""Every environment variable the harness reads, read in one place and validated (DESIGN section 3).

Secret values (provider credentials) are never stored on the settings object: only the names of
the variables that hold them, so that nothing here can leak them into a report or a log.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cto_harness.config import target_repositories
from cto_harness.errors import UsageError

DEFAULT_CASE_TIMEOUT_SECONDS = 900
DEFAULT_WORKSPACE_LIMIT_MB = 1024
ISOLATION_TIERS = ("auto", "bwrap", "landlock", "none")

# Which environment variables carry a model provider's credentials (from Case's observed behaviour).
CREDENTIAL_VARIABLES: dict[str, tuple[str, ...]] = {
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_OAUTH_TOKEN"),
    "openai": ("OPENAI_API_KEY",),
    "google": ("GEMINI_API_KEY",),
    "gemini": ("GEMINI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
}

_SECRET_NAME = re.compile(r"(API_KEY|_TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)


def default_home(environ: Mapping[str, str]) -> Path:
    if environ.get("CTO_HARNESS_HOME"):
        return Path(environ["CTO_HARNESS_HOME"]).expanduser()
    home = Path(environ.get("HOME", "~"))
    state = environ.get("XDG_STATE_HOME") or str(home / ".local" / "state")
    return Path(state).expanduser() / "cto-harness"


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """The values of every variable that looks like a credential, longest first, for redaction."""
    names = {name for names in CREDENTIAL_VARIABLES.values() for name in names}
    names |= {name for name in environ if _SECRET_NAME.search(name)}
    values = {environ[name] for name in names if len(environ.get(name, "")) >= 4}
    return sorted(values, key=len, reverse=True)


@dataclass(frozen=True)
class Settings:
    home: Path
    runs_dir: Path
    allow_case: str | None = None
    case_stage: str | None = None
    case_bin: str | None = None
    case_timeout_seconds: int = DEFAULT_CASE_TIMEOUT_SECONDS
    model_provider: str | None = None
    model: str | None = None
    model_base_url: str | None = None
    # Names (never values) of credential variables present in the environment.
    credentials_present: frozenset[str] = field(default_factory=frozenset)
    # CTO_HARNESS_ISOLATION: auto (strongest available) or a tier to force (see isolation.py).
    isolation: str = "auto"
    # Paths no provider may read: config.toml's target_repositories + CTO_HARNESS_TARGET_REPOSITORIES.
    target_repositories: tuple[Path, ...] = ()
    # CTO_HARNESS_WORKSPACE_LIMIT_MB: the most a provider may write (per file and in total).
    workspace_limit_bytes: int = DEFAULT_WORKSPACE_LIMIT_MB * 1024 * 1024
    # CTO_HARNESS_SANDBOX_UIDS: uids a root harness runs sandboxed processes as (sandbox/users.py).
    sandbox_uids: tuple[int, int] = (61100, 61163)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        home = default_home(env)
        runs_dir = Path(env["CTO_HARNESS_RUNS_DIR"]).expanduser() if env.get(
            "CTO_HARNESS_RUNS_DIR"
        ) else home / "harness-runs"
        return cls(
            home=home.absolute(),
            runs_dir=runs_dir.absolute(),
            allow_case=env.get("CTO_HARNESS_ALLOW_CASE"),
            case_stage=env.get("CTO_HARNESS_CASE_STAGE"),
            case_bin=env.get("CTO_HARNESS_CASE_BIN") or None,
            case_timeout_seconds=_timeout(env.get("CTO_HARNESS_CASE_TIMEOUT_SECONDS")),
            model_provider=env.get("CTO_HARNESS_CASE_MODEL_PROVIDER") or None,
            model=env.get("CTO_HARNESS_CASE_MODEL") or None,
            model_base_url=env.get("CTO_HARNESS_CASE_MODEL_BASE_URL") or None,
            credentials_present=frozenset(
                name
                for names in CREDENTIAL_VARIABLES.values()
                for name in names
                if env.get(name)
            ),
            isolation=_isolation(env.get("CTO_HARNESS_ISOLATION")),
            target_repositories=target_repositories(home.absolute(), env),
            workspace_limit_bytes=_positive_int(
                env.get("CTO_HARNESS_WORKSPACE_LIMIT_MB"), "CTO_HARNESS_WORKSPACE_LIMIT_MB",
                DEFAULT_WORKSPACE_LIMIT_MB,
            ) * 1024 * 1024,
            sandbox_uids=_uid_range(env.get("CTO_HARNESS_SANDBOX_UIDS")),
        )

    @property
    def providers_dir(self) -> Path:
        return self.home / "providers"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"


def _timeout(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_CASE_TIMEOUT_SECONDS
    if not raw.isdigit() or int(raw) <= 0:
        raise UsageError(
            f"CTO_HARNESS_CASE_TIMEOUT_SECONDS must be a positive integer of seconds, got {raw!r}"
        )
    return int(raw)


def _isolation(raw: str | None) -> str:
    value = (raw or "auto").strip().lower()
    if value not in ISOLATION_TIERS:
        raise UsageError(
            f"CTO_HARNESS_ISOLATION must be one of {', '.join(ISOLATION_TIERS)}, got {raw!r}"
        )
    return value


def _positive_int(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise UsageError(f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


def _uid_range(raw: str | None) -> tuple[int, int]:
    from cto_harness.sandbox.users import parse_range

    try:
        return parse_range(raw)
    except ValueError as exc:
        raise UsageError(f"CTO_HARNESS_SANDBOX_UIDS: {exc}") from None
