"""A provider policy (`harness/providers/<provider>/policy.toml`): the executable's name, where the
provider comes from and its pin (the `[distribution]` table, validated by its kind), how its
binary is recognised, and which models may drive it.

Every field is typed and unknown keys are rejected: a malformed policy is `PolicyInvalid` (a
usage error) naming the file, the key and the bad value, never a silently ignored setting.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from cto_harness.contracts import EndpointKind, StrictModel
from cto_harness.errors import PolicyInvalid
from cto_harness.fsutil import read_regular
from cto_harness.providers.distribution import Distribution, distribution_model

# Re-exported: the pin check and URL spelling of the source kind, used by the build route.
from cto_harness.providers.source import Commit, check_commit, normalize_source_url

DEFAULT_PROVIDER = "case"
_NAME = r"^[a-z0-9][a-z0-9-]*$"
# Variables every identity probe gets as private, empty folders (besides the policy's own).
PROBE_PRIVATE_DIRS = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME",
                      "XDG_CACHE_HOME", "TMPDIR")


class AdmittedModel(StrictModel):
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    base_url: str | None = None
    # What answers for this model: `live` (a real model, the default), or a deterministic
    # endpoint the harness starts itself on loopback (`scripted`, `replay`; no base URL).
    endpoint: EndpointKind = "live"

    @model_validator(mode="after")
    def _harness_endpoints_have_no_url(self) -> AdmittedModel:
        if self.endpoint != "live" and self.base_url is not None:
            raise ValueError(f"a {self.endpoint} endpoint is started by the harness: no base_url")
        return self

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value


class BinaryIdentity(StrictModel):
    probe_timeout_seconds: int = Field(default=30, gt=0, le=600)
    markers: list[str] = Field(min_length=1, description="substrings the help output must hold")
    commands: list[str] = Field(
        default_factory=list, description="command names the help must list, as whole words"
    )
    private_dirs: list[str] = Field(
        default_factory=list,
        description="variables naming folders the provider writes even for --help: each gets "
                    "an empty private folder (HOME, XDG_* and TMPDIR always do)",
    )

    @field_validator("markers", "commands")
    @classmethod
    def _non_empty(cls, values: list[str]) -> list[str]:
        if any(not value.strip() for value in values):
            raise ValueError("markers and command names must not be blank")
        return values

    @field_validator("private_dirs")
    @classmethod
    def _variables(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", value):
                raise ValueError(f"must be an environment variable name, got {value!r}")
        return values


class AcceptedPin(StrictModel):
    """A commit other than the default pin that this policy accepts, and why (`[[accepted_pins]]`).
    A pin is recorded here, never implied and never taken from a command-line flag alone."""

    commit: Commit
    reason: str = Field(min_length=1, description="why this commit is accepted")

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("an accepted pin needs a reason")
        return value.strip()


class RecordedPin(StrictModel):
    """Which recorded pin a build or admission used (written into reports and provenance)."""

    commit: str
    kind: Literal["default", "accepted"]
    reason: str


class ProviderPolicy(StrictModel):
    name: str = Field(pattern=_NAME)
    binary: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                        description="the executable's file name (in the store, and in each run)")
    # Validated by its kind's own model; dumped whole (SerializeAsAny: the subclass's fields).
    distribution: SerializeAsAny[Distribution]
    # Pins other than the distribution's own, each with its reason ([[accepted_pins]]).
    accepted_pins: list[AcceptedPin] = Field(default_factory=list)
    binary_identity: BinaryIdentity
    models: list[AdmittedModel] = Field(default_factory=list)

    @field_validator("distribution", mode="before")
    @classmethod
    def _by_kind(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return distribution_model(value.get("kind")).model_validate(value)
        return value

    @model_validator(mode="after")
    def _unique_pins(self) -> ProviderPolicy:
        seen = {self.pin}
        for pin in self.accepted_pins:
            if pin.commit in seen:
                raise ValueError(f"pin listed twice (or equal to the default pin): {pin.commit}")
            seen.add(pin.commit)
        return self

    @model_validator(mode="after")
    def _unique_models(self) -> ProviderPolicy:
        seen: set[tuple[str, str, str | None, str]] = set()
        for entry in self.models:
            key = (entry.provider, entry.model, entry.base_url, entry.endpoint)
            if key in seen:
                raise ValueError(f"model listed twice: {key}")
            seen.add(key)
        return self

    def recorded_pin(self, commit: str | None) -> RecordedPin | None:
        """The recorded pin for `commit` (None: the default pin), else None."""
        if commit is None or commit == self.pin:
            return RecordedPin(commit=self.pin, kind="default",
                               reason="the policy's default pin")
        for pin in self.accepted_pins:
            if pin.commit == commit:
                return RecordedPin(commit=pin.commit, kind="accepted", reason=pin.reason)
        return None

    @property
    def source_url(self) -> str:
        """Where the provider comes from (the distribution's URL)."""
        return self.distribution.url

    @property
    def pin(self) -> str:
        """The policy's pin (a commit for the source kind)."""
        return self.distribution.pin

    def source_url_matches(self, url: str | None) -> bool:
        return self.distribution.url_matches(url)

    def admitted_model(
        self, provider: str | None, model: str | None, base_url: str | None = None,
        endpoint: EndpointKind = "live",
    ) -> AdmittedModel | None:
        """The policy entry admitting exactly this provider, model, base URL and endpoint kind,
        else None.

        No base URL matches only an entry without one; a base URL matches only an entry naming
        that same endpoint (a trailing slash aside). Nothing is matched by prefix or wildcard.
        """
        if not provider or not model:
            return None
        wanted = base_url.rstrip("/") if base_url else None
        for entry in self.models:
            have = entry.base_url.rstrip("/") if entry.base_url else None
            if entry.provider == provider and entry.model == model and have == wanted \
                    and entry.endpoint == endpoint:
                return entry
        return None


def default_policy_path(harness_root: Path, provider: str = DEFAULT_PROVIDER) -> Path:
    """`<harness-root>/providers/<provider>/policy.toml` (harness root: the repository's
    `harness/`)."""
    if not re.fullmatch(_NAME, provider):
        raise PolicyInvalid(f"invalid provider name {provider!r}: names match [a-z0-9][a-z0-9-]*")
    return harness_root / "providers" / provider / "policy.toml"


def _describe(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    if error["type"] == "missing":
        return f"missing key {where!r}"
    return f"{where}: {error['msg']} (got {error.get('input')!r})"


def parse_policy(data: dict[str, Any], *, origin: str) -> ProviderPolicy:
    try:
        return ProviderPolicy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors(include_url=False))
        raise PolicyInvalid(f"invalid provider policy {origin}: {problems}") from None


_POLICY_CAP = 1 << 20


def load_policy(path: Path) -> ProviderPolicy:
    """Read and validate a policy file; any problem is `PolicyInvalid` naming the file."""
    try:
        # A FIFO or a device named as the policy is refused, not waited on or read forever.
        raw = read_regular(path, _POLICY_CAP, follow_link=True)
    except OSError as exc:
        raise PolicyInvalid(f"cannot read provider policy {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyInvalid(f"invalid provider policy {path}: not valid TOML: {exc}") from None
    return parse_policy(data, origin=str(path))


__all__ = [
    "DEFAULT_PROVIDER",
    "AdmittedModel",
    "BinaryIdentity",
    "ProviderPolicy",
    "check_commit",
    "default_policy_path",
    "load_policy",
    "normalize_source_url",
    "parse_policy",
]
