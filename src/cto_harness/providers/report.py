"""The provider build report (JSON + Markdown) and its in-toto / SLSA provenance statement.

`build-report.json` (or `admission-report.json` for a prebuilt binary), its Markdown twin and, for
a build, `provenance.intoto.json` sit next to the stored binary in `<store>/<sha256>/`.
The statement is an in-toto Statement v1 whose predicate is SLSA Provenance v1, as plain JSON
(unsigned: it records what this harness did, it does not prove it to a third party).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from cto_harness import __version__
from cto_harness.contracts import StrictModel
from cto_harness.evidence.intoto import statement
from cto_harness.providers.identity import IdentityEvidence, SourceIdentityEvidence
from cto_harness.providers.policy import RecordedPin

REPORT_SCHEMA_VERSION = "1.0"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:cto-harness:provider-build:bun-compile:v1"
BUILDER_ID = "urn:cto-harness:builder:local"


class StepRecord(StrictModel):
    argv: list[str]
    executable: str | None = Field(description="argv[0] as resolved on the build PATH")
    exit_code: int | None
    timed_out: bool
    duration_ms: int
    stdout_log: str
    stderr_log: str
    stdout_sha256: str
    stderr_sha256: str


class Toolchain(StrictModel):
    bun_path: str
    bun_version: str
    bun_sha256: str
    node_version: str | None


class SourceInfo(StrictModel):
    location: str = Field(description="what was cloned: a git URL or a local checkout")
    kind: Literal["url", "local"]
    source_url: str = Field(description="the repository this build claims, checked vs policy")
    source_url_explicit: bool
    local_origin_url: str | None = None
    commit: str
    policy_commit: str
    pin_overridden: bool = Field(description="true when the commit is not the default pin")
    recorded_pin: RecordedPin | None = Field(
        default=None, description="the policy's record of the pin used (default or accepted)"
    )


class CheckoutState(StrictModel):
    """The user's local checkout, observed read-only before and after the build."""

    path: str
    worktree_digest: str
    git_dir_digest: str | None
    head: str | None
    porcelain_status: list[str]


class CheckoutGuard(StrictModel):
    before: CheckoutState
    after: CheckoutState
    unchanged: bool


class ArtifactInfo(StrictModel):
    path: str = Field(description="the artifact as found (dist/ca in the clone, or the file given)")
    relative_path: str | None = None
    sha256: str
    size_bytes: int
    store_path: str
    store_sha256: str = Field(description="re-hashed after the copy into the store")


class PackageInfo(StrictModel):
    """An npm package as fetched (the `npm` kind): its registry, integrity, entry point, lock and
    the runtime it is admitted to run under."""

    name: str
    version: str
    registry: str = Field(description="the registry npm was configured with")
    tarball: str = Field(description="where the tarball came from (registry URL or local file)")
    integrity: str = Field(description="the tarball's SHA-512 (SRI), equal to dist.integrity")
    tarball_sha256: str
    tarball_shasum: str | None = None
    entry: str = Field(description="the bin target, relative to the package folder")
    entry_sha256: str
    lock_sha256: str = Field(description="package-lock.json of the install (dependencies)")
    runtime: str
    runtime_path: str
    runtime_sha256: str
    runtime_version: str
    npm_version: str


class ProviderReport(StrictModel):
    schema_version: str = REPORT_SCHEMA_VERSION
    harness_version: str = __version__
    kind: Literal["build", "admit"]
    provider: str
    status: Literal["admitted", "not_admitted"]
    provenance_level: Literal["built", "fetched", "asserted"]
    invocation_id: str
    started_at: str
    finished_at: str
    duration_ms: int
    source: SourceInfo
    build_dir: str | None = None
    commands: list[list[str]] = Field(default_factory=list)
    steps: list[StepRecord] = Field(default_factory=list)
    toolchain: Toolchain | None = None
    checkout: CheckoutGuard | None = None
    source_identity: SourceIdentityEvidence | None = None
    binary_identity: IdentityEvidence
    identity_evidence_sha256: str
    artifact: ArtifactInfo
    provenance_statement: str | None = None
    log_digests: dict[str, str] = Field(default_factory=dict)
    package: PackageInfo | None = None


def provenance_statement(report: ProviderReport) -> dict[str, Any]:
    """An in-toto Statement v1 with a SLSA Provenance v1 predicate for a built binary."""
    assert report.toolchain is not None
    source = report.source
    binary = report.artifact.store_path.rsplit("/", 1)[-1]
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "source": source.source_url,
                "commit": source.commit,
                "commands": report.commands,
                "artifact": report.artifact.relative_path,
            },
            "internalParameters": {
                "policy": {
                    "name": report.provider, "commit": source.policy_commit,
                    "recordedPin": source.recorded_pin.model_dump(mode="json")
                    if source.recorded_pin else None,
                },
                "sourceLocation": source.location,
                "buildDir": report.build_dir,
                "bunVersion": report.toolchain.bun_version,
                "nodeVersion": report.toolchain.node_version,
            },
            "resolvedDependencies": [
                {
                    "uri": f"git+{source.source_url}@{source.commit}",
                    "digest": {"gitCommit": source.commit},
                },
                {
                    "name": "bun",
                    "uri": f"pkg:npm/bun@{report.toolchain.bun_version}",
                    "digest": {"sha256": report.toolchain.bun_sha256},
                },
            ],
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": {"cto-harness": __version__}},
            "metadata": {
                "invocationId": report.invocation_id,
                "startedOn": report.started_at,
                "finishedOn": report.finished_at,
            },
            "byproducts": [
                {"name": name, "digest": {"sha256": digest}}
                for name, digest in sorted(report.log_digests.items())
            ],
        },
    }
    return statement({binary: report.artifact.sha256}, SLSA_PROVENANCE_V1, predicate)


def _pin_text(pin: RecordedPin | None) -> str:
    if pin is None:
        return "none recorded"
    return f"{pin.commit} ({pin.kind}: {pin.reason})".replace("|", "\\|").replace("`", "'")


def render_markdown(report: ProviderReport) -> str:
    title = "Provider build report" if report.kind == "build" else "Provider admission report"
    a, s = report.artifact, report.source
    rows: list[tuple[str, str]] = [
        ("provider", report.provider),
        ("status", report.status),
        ("provenance level", report.provenance_level),
        ("source URL", s.source_url),
        ("source location", s.location),
        ("commit", s.commit),
        ("policy pin", s.policy_commit),
        ("recorded pin used", _pin_text(s.recorded_pin)),
        ("artifact", a.path),
        ("store path", a.store_path),
        ("SHA-256", a.sha256),
        ("size", f"{a.size_bytes} bytes"),
        ("started", report.started_at),
        ("finished", report.finished_at),
        ("invocation", report.invocation_id),
    ]
    if report.toolchain is not None:
        rows += [
            ("Bun", f"{report.toolchain.bun_version} ({report.toolchain.bun_path})"),
            ("Node", report.toolchain.node_version or "not found"),
        ]
    if report.package is not None:
        p = report.package
        rows += [("package", f"{p.name}@{p.version}"), ("registry", p.registry),
                 ("integrity", p.integrity), ("entry point", f"{p.entry} ({p.entry_sha256})"),
                 ("package-lock.json", p.lock_sha256),
                 ("runtime", f"{p.runtime} {p.runtime_version} ({p.runtime_sha256})")]
    if report.checkout is not None:
        rows.append(("checkout unchanged", "yes" if report.checkout.unchanged else "NO"))
    lines = [f"# {title}", "", "| field | value |", "|---|---|"]
    lines += [f"| {k} | `{v}` |" for k, v in rows]
    if report.steps:
        lines += ["", "## Build steps", "", "| command | exit | time | stdout sha256 |",
                  "|---|---|---|---|"]
        for step in report.steps:
            lines.append(
                f"| `{' '.join(step.argv)}` | {step.exit_code} | {step.duration_ms} ms "
                f"| `{step.stdout_sha256[:16]}…` |"
            )
    if report.source_identity is not None:
        si = report.source_identity
        found = ", ".join(f"{key} `{json.dumps(value)}`" for key, value in si.fields.items())
        lines += ["", "## Source identity", "",
                  f"{si.manifest}: {found}, bin `{json.dumps(si.bin)}`"]
    bi = report.binary_identity
    lines += [
        "", "## Binary identity", "",
        f"`{' '.join(bi.argv[1:])}` exited {bi.exit_code} in {bi.duration_ms} ms; "
        f"help output sha256 `{bi.help_sha256}`.",
        f"Markers found: {', '.join(f'`{m}`' for m in bi.markers_found)}.",
        f"Commands found: {', '.join(f'`{c}`' for c in bi.commands_found)}.",
    ]
    if report.log_digests:
        lines += ["", "## Logs", ""]
        lines += [f"- `{name}` sha256 `{d}`" for name, d in sorted(report.log_digests.items())]
    if report.provenance_statement:
        lines += ["", f"Provenance: `{report.provenance_statement}` (in-toto Statement v1, "
                  "SLSA Provenance v1 predicate, unsigned)."]
    return "\n".join(lines) + "\n"
