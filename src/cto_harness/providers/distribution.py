"""How a provider reaches the harness: its distribution kind. A policy's `[distribution]` table
names its `kind`, and the kind's own model validates the rest of the table.

Kinds are registered here by name ("module:Class"), imported only when a policy names them:

- `source`: a git repository at a pinned commit, built here (`providers/source.py`, built by
  `providers/build.py`).

- `npm`: a package pinned by name@version, its tarball checked against the registry's
  integrity, installed with `--ignore-scripts` (`providers/npm.py`, its own route).

A new kind is a new module with a `Distribution` subclass whose `route` names the function that
obtains, proves and admits it, plus one line in `DISTRIBUTION_KINDS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TextIO, TypedDict

from pydantic import Field

from cto_harness.contracts import StrictModel

DISTRIBUTION_KINDS: dict[str, str] = {
    "source": "cto_harness.providers.source:SourceDistribution",
    "npm": "cto_harness.providers.npm:NpmDistribution",
}


class Distribution(StrictModel):
    """The policy's `[distribution]` table: where the provider comes from and its pin."""

    kind: str
    url: str = Field(min_length=1, description="where the provider comes from (its origin)")
    # "module:function" of the route that obtains, proves and admits a binary of this kind:
    # (source, pin, policy, settings, **AdmitOptions) -> ProviderReport.
    route: ClassVar[str]
    # "module:function" of the route that obtains it again and compares digests:
    # (record, policy, settings, **VerifyOptions) -> a result with `matches`.
    verify_route: ClassVar[str]

    @property
    def pin(self) -> str:
        """The pinned revision (a commit, a version): what every admission names."""
        raise NotImplementedError

    def url_matches(self, url: str | None) -> bool:
        return url is not None and url.strip() == self.url.strip()


class AdmitOptions(TypedDict, total=False):
    """The keyword options of every kind's admission route (`Distribution.route`)."""

    progress: TextIO | None  # where progress lines go (default stderr; None: quiet)
    source_url: str | None  # the origin of a local source (a kind without one refuses it)
    environ: Mapping[str, str] | None  # the caller's environment (default os.environ)


class VerifyOptions(TypedDict, total=False):
    """The keyword options of every kind's verification route (`Distribution.verify_route`)."""

    source: str | None  # where to obtain it again (default: where the record says)
    progress: TextIO | None
    environ: Mapping[str, str] | None


def distribution_model(kind: object) -> type[Distribution]:
    """The model of distribution kind `kind` (a `ValueError` names the known kinds)."""
    if not isinstance(kind, str) or kind not in DISTRIBUTION_KINDS:
        raise ValueError(f"unknown distribution kind {kind!r} "
                         f"(known: {', '.join(sorted(DISTRIBUTION_KINDS))})")
    module, _, attr = DISTRIBUTION_KINDS[kind].partition(":")
    model = getattr(importlib.import_module(module), attr)
    assert isinstance(model, type) and issubclass(model, Distribution)
    return model


def route(spec: str) -> Callable[..., Any]:
    """The function a route spec ("module:function") names."""
    module, _, attr = spec.partition(":")
    found = getattr(importlib.import_module(module), attr)
    assert callable(found)
    return found
