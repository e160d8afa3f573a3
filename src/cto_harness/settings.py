"""Settings: every environment variable the harness core reads, in one place, validated; each
engine declares its own (a `SettingsBase` subclass with its own prefix, e.g. `CTO_HARNESS_CASE_`).

A value is resolved from layers, first found wins: command-line flag > environment > config file
(`$CTO_HARNESS_HOME/config.toml`) > default, and where each effective value came from is recorded
(`settings.sources`, shown by `cto-harness config show`). A bad value is a usage error naming the
variable (or file and key) it came from.

Secret values (provider credentials) are never stored on a settings object: engines read them
from the run's environment at launch, and `secret_values` finds them for redaction.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
)

from cto_harness.config import (
    ENV_TARGETS,
    check_target,
    expand_user,
    read_config,
    target_repositories,
)
from cto_harness.errors import UsageError
from cto_harness.setting_flags import Scope, flag_for

DEFAULT_WORKSPACE_LIMIT_MB = 1024
ISOLATION_TIERS = ("auto", "bwrap", "landlock", "none")
IsolationTier = Literal["auto", "bwrap", "landlock", "none"]

# Which environment variables carry a model provider's credentials (from Case's observed
# behaviour; the same names every agent built on these model APIs reads).
CREDENTIAL_VARIABLES: dict[str, tuple[str, ...]] = {
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_OAUTH_TOKEN"),
    "openai": ("OPENAI_API_KEY",),
    "google": ("GEMINI_API_KEY",),
    "gemini": ("GEMINI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
}

_SECRET_NAME = re.compile(r"(API_KEY|_TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)


def _digits(value: object) -> object:
    """Whole numbers only, as a string of digits (no sign, no spaces, no decimals); a TOML
    `true` is no number."""
    if isinstance(value, bool) or (isinstance(value, str) and not value.isdigit()):
        raise ValueError("must be a positive whole number")
    return value


# At most 10^9: a time limit of 31 years, a disk limit of a petabyte. Past it a value is a usage
# error here, not an overflow deep in a run (a timestamp, an rlimit).
MAX_WHOLE = 10**9
PositiveWhole = Annotated[int, BeforeValidator(_digits), Field(gt=0, le=MAX_WHOLE)]


def _uid_range(value: object) -> object:
    from cto_harness.sandbox.users import parse_range  # the pool's own parser

    if isinstance(value, list | tuple):
        # config.toml's `[N, M]` (and the default): held to the same bounds as `N-M`. Passed
        # through as they were, [-1, -1] started a run whose sandbox "uid" kept root's and
        # [5, 1] one that ended in a harness error.
        if len(value) != 2 or not all(type(v) is int for v in value):
            raise ValueError("expected N-M or [N, M], two whole numbers")
        value = f"{value[0]}-{value[1]}"
    if not isinstance(value, str):
        raise ValueError("expected N-M or [N, M], two whole numbers")
    return parse_range(value)


def default_home(environ: Mapping[str, str]) -> Path:
    if environ.get("CTO_HARNESS_HOME"):
        return expand_user(environ["CTO_HARNESS_HOME"], "CTO_HARNESS_HOME")
    home = Path(environ.get("HOME", "~"))
    state = environ.get("XDG_STATE_HOME") or str(home / ".local" / "state")
    return expand_user(state, "XDG_STATE_HOME or HOME") / "cto-harness"


@contextlib.contextmanager
def environment_set(values: Mapping[str, str]) -> Iterator[None]:
    """This process's environment with `values` set, for the processes it starts meanwhile;
    every variable restored (or removed) afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """The values of every variable that looks like a credential, longest first, for redaction."""
    names = {name for names in CREDENTIAL_VARIABLES.values() for name in names}
    names |= {name for name in environ if _SECRET_NAME.search(name)}
    values = {environ[name] for name in names if len(environ.get(name, "")) >= 4}
    return sorted(values, key=len, reverse=True)


class SettingsConfigDict(ConfigDict, total=False):
    """A settings model's config: pydantic's, plus the prefix of its environment variables.
    (pydantic-settings' `SettingsConfigDict` is accepted too: only `env_prefix` is read.)"""

    env_prefix: str


class SettingsBase(BaseModel):
    """A frozen settings model read only through `load` (never silently from `os.environ`).

    Subclasses set `model_config = SettingsConfigDict(env_prefix=...)`; a field's variable is
    the prefix plus its upper-case name, or its `validation_alias` (contract names).

    A plain pydantic model, not pydantic-settings' `BaseSettings`: `load` resolves every layer
    itself (and records where each value came from), so that library would add nothing but its
    import (asyncio, ssl, dotenv: ~40 ms on every command).
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_by_name=True,
                                      validate_default=True, arbitrary_types_allowed=True,
                                      protected_namespaces=())
    # Whose flags set these fields (setting_flags.py): the core's, or the chosen engine's.
    FLAG_SCOPE: ClassVar[Scope] = "engine"
    # Fields read from the environment only, never from a flag or the config file: a consent
    # given for each invocation (Case's CTO_HARNESS_ALLOW_CASE and CTO_HARNESS_CASE_STAGE).
    ENV_ONLY: ClassVar[frozenset[str]] = frozenset()
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def env_names(cls, field: str) -> list[str]:
        """The environment variable(s) a field is read from, in order of preference."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, str):
            return [alias]
        if isinstance(alias, AliasChoices):
            return [choice for choice in alias.choices if isinstance(choice, str)]
        return [f"{cls.model_config.get('env_prefix', '')}{field.upper()}"]

    @classmethod
    def flag_name(cls, field: str) -> str | None:
        """The command-line flag that sets `field`, or None for an environment-only field."""
        return None if field in cls.ENV_ONLY else flag_for(cls.FLAG_SCOPE, field)

    @classmethod
    def setting_name(cls, field: str) -> str:
        """How a user sets `field`, for messages: `CTO_HARNESS_CASE_MODEL (--model)`; a value
        may have come from either, so a message names both."""
        flag = cls.flag_name(field)
        return f"{cls.env_names(field)[0]} ({flag})" if flag else cls.env_names(field)[0]

    @classmethod
    def variables_for(cls, flags: Mapping[str, Any],
                      environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """Flag values as the variables a run's other processes read (suite workers, cluster
        nodes): each replaces the environment's value, so flag > environment holds there too."""
        return {cls.env_names(name)[0]: str(value) for name, value in flags.items()
                if value is not None and name in cls.model_fields}

    @classmethod
    def _check_layers(cls, flags: Mapping[str, Any] | None, config: Mapping[str, Any] | None,
                      config_origin: str) -> None:
        for name in (flags or {}):
            if name not in cls.model_fields or name in cls.ENV_ONLY:
                raise UsageError(f"{flag_for(cls.FLAG_SCOPE, name)}: not a setting of "
                                 f"{cls.__name__}")
        for name in (config or {}):
            if name in cls.ENV_ONLY:
                raise UsageError(f"{config_origin}: {name} is read from the environment only "
                                 f"({cls.env_names(name)[0]}: a consent given per run)")
            if name not in cls.model_fields:
                known = ", ".join(n for n in cls.model_fields if n not in cls.ENV_ONLY)
                raise UsageError(f"{config_origin}: unknown key {name!r} (known: {known})")

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        flags: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        config_origin: str = "config file",
        defaults: Mapping[str, Any] | None = None,
    ) -> Self:
        """Resolve every field from flag > environment > config > default; record the source.

        `flags` and `config` map field names to values; an empty environment value is unset.
        """
        env = os.environ if environ is None else environ
        cls._check_layers(flags, config, config_origin)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name in cls.model_fields:
            if flags and flags.get(name) is not None:
                values[name], sources[name] = flags[name], f"flag {cls.flag_name(name)}"
                continue
            var = next((v for v in cls.env_names(name) if env.get(v)), None)
            if var is not None:
                values[name], sources[name] = env[var], f"env {var}"
            elif config and config.get(name) is not None:
                values[name], sources[name] = config[name], f"{config_origin}: {name}"
            elif defaults and defaults.get(name) is not None:
                values[name], sources[name] = defaults[name], "default"
            else:
                sources[name] = "default"
        try:
            loaded = cls(**values)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = str(error["loc"][0]) if error["loc"] else ""
            where = sources.get(field, field).removeprefix("env ").removeprefix("flag ")
            message = str(error["msg"]).removeprefix("Value error, ")
            raise UsageError(f"{where}: {message} (got {values.get(field)!r})") from None
        loaded._sources = sources
        return loaded

    @property
    def sources(self) -> dict[str, str]:
        """Where each effective value came from: `env NAME`, `flag --x`, `<file>: key`, `default`."""
        return dict(self._sources)


class Settings(SettingsBase):
    """The core's settings (DESIGN section 3, the variables no engine owns)."""

    model_config = SettingsConfigDict(env_prefix="CTO_HARNESS_")
    FLAG_SCOPE: ClassVar[Scope] = "core"

    home: Path = Field(description="durable state: provider store, admissions, keys")
    runs_dir: Path = Field(description="where run bundles go")
    # CTO_HARNESS_ISOLATION: auto (strongest available) or a tier to force (see isolation.py).
    isolation: Annotated[IsolationTier, BeforeValidator(lambda v: str(v).strip().lower())] = "auto"
    # CTO_HARNESS_WORKSPACE_LIMIT_MB: the most a provider may write (per file and in total).
    workspace_limit_mb: PositiveWhole = DEFAULT_WORKSPACE_LIMIT_MB
    # Paths no provider may read: config.toml's target_repositories + CTO_HARNESS_TARGET_REPOSITORIES
    # (additive: an environment cannot make a run see less hidden than the file says).
    target_repositories: tuple[Path, ...] = ()
    # CTO_HARNESS_SANDBOX_UIDS (`N` or `N-M`): the uids a root harness runs sandboxed processes as
    # (sandbox/users.py allocates one per run).
    sandbox_uids: Annotated[tuple[int, int], BeforeValidator(_uid_range)] = (61100, 61163)

    # Keys of config.toml that set a field here (target_repositories is merged, not overridden).
    CONFIG_KEYS: ClassVar[frozenset[str]] = frozenset({"runs_dir", "isolation",
                                                       "workspace_limit_mb", "sandbox_uids"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 flags: Mapping[str, Any] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        flags = dict(flags or {})
        home = Path(flags["home"]) if flags.get("home") else default_home(env)
        home = home.absolute()
        config = read_config(home)
        # Target repositories add up (file, then environment, then flags): never fewer hidden.
        added = [check_target(str(expand_user(raw, "--target-repository").absolute()),
                              "--target-repository")
                 for raw in flags.pop("target_repositories", None) or ()]
        targets = tuple(dict.fromkeys([*target_repositories(home, env), *added]))
        settings = cls.load(
            {k: v for k, v in env.items() if k != ENV_TARGETS},
            flags=flags,
            config={k: v for k, v in config.items() if k in cls.CONFIG_KEYS},
            config_origin=str(home / "config.toml"),
            defaults={"home": home, "runs_dir": home / "harness-runs",
                      "target_repositories": targets},
        )
        fixed = settings.model_copy(update={
            "home": home, "runs_dir": expand_user(
                settings.runs_dir,
                settings.sources.get("runs_dir", "runs_dir").removeprefix("env ")).absolute()})
        fixed._sources = settings.sources | {"target_repositories": "config file + env "
                                             f"{ENV_TARGETS}" + (" + flag --target-repository"
                                                                 if added else "")}
        return fixed

    @classmethod
    def variables_for(cls, flags: Mapping[str, Any],
                      environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """As `SettingsBase.variables_for`; target repositories join the environment's list."""
        flags = dict(flags)
        added = [str(expand_user(p, "--target-repository").absolute())
                 for p in flags.pop("target_repositories", None) or ()]
        variables = super().variables_for(flags)
        if added:
            given = (environ if environ is not None else os.environ).get(ENV_TARGETS, "")
            variables[ENV_TARGETS] = ":".join(p for p in (given, *added) if p)
        return variables

    @property
    def workspace_limit_bytes(self) -> int:
        return self.workspace_limit_mb * 1024 * 1024

    @property
    def providers_dir(self) -> Path:
        return self.home / "providers"

    @property
    def launch_copies_dir(self) -> Path:
        """Copies of admitted installs that runs hard-link from (an engine's, e.g. pi's): the
        harness changes their link counts while other runs' providers run, so the outside-write
        guard skips this folder; a run re-hashes what it linked, before and after."""
        return self.home / "launch-copies"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"
