"""The provider policy (`harness/providers/case/policy.toml`): where the source comes from, the pin,
how it is built, how it is recognised, and which models may drive it.

Every field is typed and unknown keys are rejected: a malformed policy is a usage error naming the
file, the key and the bad value, never a silently ignored setting.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator

from cto_harness.contracts import StrictModel, check_relative_glob
from cto_harness.errors import PolicyInvalid

COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}$")
POLICY_RELATIVE_PATH = Path("providers") / "case" / "policy.toml"


def check_commit(value: str) -> str:
    if not COMMIT_PATTERN.fullmatch(value):
        raise ValueError(f"must be a full 40-character lowercase hex commit id, got {value!r}")
    return value


def normalize_source_url(url: str) -> str:
    """One spelling per repository: no trailing slash or `.git`, host in lower case."""
    url = url.strip().rstrip("/")
    url = url.removesuffix(".git")
    parts = urlsplit(url)
    if parts.scheme and parts.netloc:
        return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()
    return url


class AdmittedModel(StrictModel):
    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    base_url: str | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value


class BuildSpec(StrictModel):
    commands: list[list[str]] = Field(min_length=1)
    step_timeout_seconds: int = Field(default=600, gt=0, le=7200)
    artifact: str = "dist/ca"

    @field_validator("commands")
    @classmethod
    def _argv_lists(cls, values: list[list[str]]) -> list[list[str]]:
        for argv in values:
            if not argv or any(not arg for arg in argv):
                raise ValueError(f"each build command is a non-empty argv list, got {argv!r}")
        return values

    @field_validator("artifact")
    @classmethod
    def _relative(cls, value: str) -> str:
        return check_relative_glob(value)


class SourceIdentity(StrictModel):
    package_name: str = Field(min_length=1)
    private: bool = True
    bin_name: str = Field(min_length=1)


class BinaryIdentity(StrictModel):
    probe_timeout_seconds: int = Field(default=30, gt=0, le=600)
    markers: list[str] = Field(min_length=1, description="substrings the help output must hold")
    commands: list[str] = Field(
        default_factory=list, description="command names the help must list, as whole words"
    )

    @field_validator("markers", "commands")
    @classmethod
    def _non_empty(cls, values: list[str]) -> list[str]:
        if any(not value.strip() for value in values):
            raise ValueError("markers and command names must not be blank")
        return values


class ProviderPolicy(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    source_url: str = Field(min_length=1)
    commit: str
    build: BuildSpec
    source_identity: SourceIdentity
    binary_identity: BinaryIdentity
    models: list[AdmittedModel] = Field(default_factory=list)

    @field_validator("commit")
    @classmethod
    def _commit(cls, value: str) -> str:
        return check_commit(value)

    @model_validator(mode="after")
    def _unique_models(self) -> ProviderPolicy:
        seen: set[tuple[str, str, str | None]] = set()
        for entry in self.models:
            key = (entry.provider, entry.model, entry.base_url)
            if key in seen:
                raise ValueError(f"model listed twice: {key}")
            seen.add(key)
        return self

    def source_url_matches(self, url: str | None) -> bool:
        return url is not None and normalize_source_url(url) == normalize_source_url(
            self.source_url
        )

    def admitted_model(
        self, provider: str | None, model: str | None, base_url: str | None = None
    ) -> AdmittedModel | None:
        """The policy entry admitting exactly this provider, model and endpoint, else None.

        No base URL matches only an entry without one; a base URL matches only an entry naming
        that same endpoint (a trailing slash aside). Nothing is matched by prefix or wildcard.
        """
        if not provider or not model:
            return None
        wanted = base_url.rstrip("/") if base_url else None
        for entry in self.models:
            have = entry.base_url.rstrip("/") if entry.base_url else None
            if entry.provider == provider and entry.model == model and have == wanted:
                return entry
        return None


def default_policy_path(harness_root: Path) -> Path:
    """`<harness-root>/providers/case/policy.toml` (harness root: the repository's `harness/`)."""
    return harness_root / POLICY_RELATIVE_PATH


def _describe(error: dict[str, Any]) -> str:
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


def load_policy(path: Path) -> ProviderPolicy:
    """Read and validate a policy file; any problem is `PolicyInvalid` (a usage error) naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyInvalid(f"cannot read provider policy {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyInvalid(f"invalid provider policy {path}: not valid TOML: {exc}") from None
    return parse_policy(data, origin=str(path))
