"""cto-harness as a library: run a fixture case, check a bundle, build or admit a provider.

    from pathlib import Path
    from cto_harness.api import execute_run, verify_bundle

    result = execute_run("r1-string-slugify", harness_root=Path("harness"))   # engine: fake
    print(result.report.verdict, result.exit_code)
    verify_bundle(result.run_dir, result.public_key)  # raises BundleInvalid at a discrepancy

Errors are the `HarnessError` families of `cto_harness.errors` (`exit_code_for` maps any of them
to the CLI's exit code). Settings come from the environment unless a `Settings` is passed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from cto_harness.contracts import Report
from cto_harness.core.fixtures import find_harness_root, list_case_ids
from cto_harness.core.run import RunResult, execute_run
from cto_harness.engines import engine_names, get_engine, register_engine
from cto_harness.engines.base import Admission, Engine, EngineSettings, Outcome, RunContext
from cto_harness.errors import (
    Blocked,
    BlockerCode,
    BundleInvalid,
    HarnessError,
    UsageError,
    exit_code_for,
)
from cto_harness.evidence.verify import verify_bundle
from cto_harness.providers.policy import ProviderPolicy, default_policy_path, load_policy
from cto_harness.providers.report import ProviderReport
from cto_harness.settings import Settings


def provider_policy(provider: str = "case", *, harness_root: Path | None = None,
                    policy: Path | None = None) -> ProviderPolicy:
    """The policy of `provider` (harness/providers/<provider>/policy.toml), or the file `policy`."""
    return load_policy(policy or default_policy_path(harness_root or find_harness_root(), provider))


def build(
    source: str,
    *,
    provider: str = "case",
    commit: str | None = None,
    source_url: str | None = None,
    harness_root: Path | None = None,
    policy: Path | None = None,
    settings: Settings | None = None,
    progress: TextIO | None = sys.stderr,
) -> ProviderReport:
    """Build `provider` from `source` (a git URL or a local checkout) at `commit` (default: the
    policy's pin) through the route of its distribution kind, and admit it (provenance
    `built`). Raises `Blocked` (registry unchanged) when any check fails."""
    from cto_harness.providers.distribution import route

    chosen = provider_policy(provider, harness_root=harness_root, policy=policy)
    report: ProviderReport = route(chosen.distribution.route)(
        source, commit, chosen, settings or Settings.from_env(), progress=progress,
        source_url=source_url)
    return report


def admit(
    binary: Path,
    *,
    source_url: str,
    commit: str,
    provider: str = "case",
    harness_root: Path | None = None,
    policy: Path | None = None,
    settings: Settings | None = None,
    progress: TextIO | None = sys.stderr,
) -> ProviderReport:
    """Admit a prebuilt `binary` claimed to come from `source_url` at `commit` (provenance
    `asserted`): the same identity checks as a build. Raises `Blocked` when one fails."""
    from cto_harness.providers.build import admit_prebuilt

    chosen = provider_policy(provider, harness_root=harness_root, policy=policy)
    return admit_prebuilt(binary, source_url, commit, chosen, settings or Settings.from_env(),
                          progress=progress)


__all__ = [
    "Admission",
    "Blocked",
    "BlockerCode",
    "BundleInvalid",
    "Engine",
    "EngineSettings",
    "HarnessError",
    "Outcome",
    "ProviderPolicy",
    "ProviderReport",
    "Report",
    "RunContext",
    "RunResult",
    "Settings",
    "UsageError",
    "admit",
    "build",
    "engine_names",
    "execute_run",
    "exit_code_for",
    "find_harness_root",
    "get_engine",
    "list_case_ids",
    "provider_policy",
    "register_engine",
    "verify_bundle",
]
