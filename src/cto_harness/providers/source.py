"""The `source` distribution kind: a git repository at a pinned commit, built here with the
policy's commands (`providers/build.py` is its route), proven by its manifest and its binary."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator

from cto_harness.contracts import RelativeGlob, StrictModel
from cto_harness.providers.distribution import Distribution

COMMIT_PATTERN = re.compile(r"^[0-9a-f]{40}$")


def check_commit(value: str) -> str:
    if not COMMIT_PATTERN.fullmatch(value):
        raise ValueError(f"must be a full 40-character lowercase hex commit id, got {value!r}")
    return value


Commit = Annotated[str, AfterValidator(check_commit)]


def normalize_source_url(url: str) -> str:
    """One spelling per repository: no trailing slash or `.git`, host in lower case."""
    url = url.strip().rstrip("/")
    url = url.removesuffix(".git")
    parts = urlsplit(url)
    if parts.scheme and parts.netloc:
        return parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()
    return url


class SourceIdentity(StrictModel):
    """What the source's manifest (a JSON object at its root) must say: exact values of top-level
    fields, and the name its `bin` table must declare. (The npm package `case`, a string-case
    library, has Case's name but is not private and has no `bin` at all.)"""

    manifest: RelativeGlob = Field(default="package.json",
                                   description="path of the manifest in the source")
    fields: dict[str, Any] = Field(min_length=1, description="top-level keys and their values")
    bin: str | None = Field(default=None, description="a name the manifest's `bin` must declare")


class SourceDistribution(Distribution):
    kind: Literal["source"]
    commit: Commit
    commands: list[list[str]] = Field(min_length=1, description="build steps, argv lists")
    step_timeout_seconds: int = Field(default=600, gt=0, le=7200)
    artifact: RelativeGlob = Field(description="the built executable, relative to the checkout")
    identity: SourceIdentity

    route: ClassVar[str] = "cto_harness.providers.build:build_provider"
    verify_route: ClassVar[str] = "cto_harness.providers.build:verify_provider"

    @property
    def pin(self) -> str:
        return self.commit

    def url_matches(self, url: str | None) -> bool:
        return url is not None and normalize_source_url(url) == normalize_source_url(self.url)

    @field_validator("commands")
    @classmethod
    def _argv_lists(cls, values: list[list[str]]) -> list[list[str]]:
        for argv in values:
            if not argv or any(not arg for arg in argv):
                raise ValueError(f"each build command is a non-empty argv list, got {argv!r}")
        return values
