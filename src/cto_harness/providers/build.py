"""The route of the `source` distribution kind: build a provider binary from a pinned source,
prove what it is, store it and admit it. Everything provider-specific (the executable's name, the
build commands, the manifest rules, the probe) comes from the policy.

Flow of `build_provider` (every failure is `Blocked(code, …)`, raised before the registry is
touched; the registry is written last):

    bun check -> clone (deterministic path) -> pin + origin -> source identity -> build commands
    -> artifact present and executable -> staged copy + hash -> `<binary> --help` probe
    -> user's checkout unchanged -> store/<sha256>/<binary> + reports + provenance -> admission

`admit_prebuilt` is the same from "present and executable" on, with provenance `asserted`.
`verify_provider` rebuilds at the same deterministic path and compares digests.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, Unpack

from cto_harness.clock import now_iso
from cto_harness.core.gitdir import redact_url
from cto_harness.errors import Blocked, BlockerCode, UsageError
from cto_harness.fsutil import (
    atomic_write_json,
    atomic_write_text,
    exclusive_lock,
    sha256_file,
)
from cto_harness.git import user_git_env
from cto_harness.progress import Progress
from cto_harness.providers.checkout import check_unchanged, observe_checkout, origin_url
from cto_harness.providers.distribution import AdmitOptions, VerifyOptions
from cto_harness.providers.identity import (
    SourceIdentityEvidence,
    check_executable,
    check_source_identity,
    probe_binary_identity,
)
from cto_harness.providers.policy import (
    ProviderPolicy,
    RecordedPin,
    check_commit,
    normalize_source_url,
)
from cto_harness.providers.registry import (
    AdmissionRecord,
    record_admission,
)
from cto_harness.providers.report import (
    ArtifactInfo,
    CheckoutGuard,
    CheckoutState,
    ProviderReport,
    SourceInfo,
    StepRecord,
    Toolchain,
    provenance_statement,
    render_markdown,
)
from cto_harness.providers.source import SourceDistribution
from cto_harness.providers.steps import StepConfinement, log_digests, run_step
from cto_harness.providers.store import open_store_entry, remove_tree, staged_copy
from cto_harness.sandbox.process import run_quiet
from cto_harness.settings import Settings

_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", re.IGNORECASE)
# Environment a build step may see besides what the harness sets. No credential, no npm token.
_BUILD_PASSTHROUGH = (
    "LANG", "LC_ALL", "TZ", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
    "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "NPM_CONFIG_REGISTRY",
    "BUN_CONFIG_REGISTRY",
)
_GIT_TIMEOUT = 600
BuildReport = ProviderReport  # the report `build_provider` returns and writes
PREFIX = "[provider] "  # of every progress line


def is_url(source: str) -> bool:
    return _URL.match(source) is not None


def source_of(policy: ProviderPolicy) -> SourceDistribution:
    """The policy's `[distribution]`, which this route builds: it must be of kind `source`."""
    if not isinstance(policy.distribution, SourceDistribution):
        raise UsageError(f"provider {policy.name} is distributed as "
                         f"{policy.distribution.kind!r}, not built from a source")
    return policy.distribution


def build_root(settings: Settings, policy: ProviderPolicy, commit: str) -> Path:
    """`$CTO_HARNESS_HOME/builds/<provider>/<commit>`: the same absolute path for every build of a
    commit, because the Case build embeds its checkout path (byte-identical only there)."""
    return settings.home / "builds" / policy.name / commit


def build_logs(root: Path) -> Path:
    """Where the steps of the build at `root` log: beside the build folder, never in it. The
    build folder is the confined steps' to write; logs in it would be opened by the harness, as
    itself, through whatever links an earlier step planted at their names."""
    return root.with_name(f"{root.name}.logs")


@dataclass
class _Tool:
    path: str
    version: str


def _tool_version(path: str) -> str:
    result = run_quiet([path, "--version"], timeout=30, check=False)
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if result.returncode == 0 and lines else ""


def find_bun(environ: Mapping[str, str]) -> _Tool:
    """Blocked `bun_missing` unless `bun` is on the environment's PATH and answers `--version`."""
    path = shutil.which("bun", path=environ.get("PATH", ""))
    if path is None:
        raise Blocked(BlockerCode.BUN_MISSING, "bun is not on PATH; install it (npm install -g bun@1)")
    version = _tool_version(path)
    if not version:
        raise Blocked(BlockerCode.BUN_MISSING, f"{path} --version failed: not a working Bun")
    return _Tool(str(Path(path).absolute()), version)


def _node_version(environ: Mapping[str, str]) -> str | None:
    path = shutil.which("node", path=environ.get("PATH", ""))
    return (_tool_version(path) or None) if path else None


def _git(args: list[str], cwd: Path | None = None) -> tuple[int, str]:
    result = run_quiet(["git", *args], cwd=cwd, env=user_git_env(os.environ),
                       timeout=_GIT_TIMEOUT, check=False)
    out = (result.stdout if result.returncode == 0 else result.stderr).strip()
    return result.returncode, out


def _build_env(root: Path, bun: _Tool, environ: Mapping[str, str]) -> dict[str, str]:
    home, tmp = root / "home", root / "tmp"
    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    env = {name: environ[name] for name in _BUILD_PASSTHROUGH if name in environ}
    bun_dir = str(Path(bun.path).parent)
    env.update(
        PATH=os.pathsep.join([bun_dir, environ.get("PATH", os.defpath)]),
        HOME=str(home),
        TMPDIR=str(tmp),
        # Inside the build root: a step may write nothing else (the shared cache under the
        # harness's home would let one build's scripts plant packages for the next).
        BUN_INSTALL_CACHE_DIR=str(root / "bun-cache"),
        GIT_TERMINAL_PROMPT="0",
        NO_COLOR="1",
    )
    return env


@dataclass
class BuiltArtifact:
    """What a build produced, before anything is stored or admitted."""

    path: Path
    relative_path: str
    source: SourceInfo
    build_dir: Path
    steps: list[StepRecord]
    toolchain: Toolchain
    source_identity: SourceIdentityEvidence
    checkout_before: CheckoutState | None
    log_digests: dict[str, str]


def recorded_pin(policy: ProviderPolicy, commit: str) -> RecordedPin:
    """The policy's record of `commit` as a pin; `source_commit_mismatch` when it has none.

    A commit other than the default pin is accepted only when the policy lists it under
    `[[accepted_pins]]` with its reason: a command-line flag alone never moves the pin."""
    pin = policy.recorded_pin(commit)
    if pin is None:
        recorded = ", ".join([policy.pin[:12], *(p.commit[:12] for p in policy.accepted_pins)])
        raise Blocked(
            BlockerCode.SOURCE_COMMIT_MISMATCH,
            f"commit {commit} is not a pin recorded in the provider policy (recorded: "
            f"{recorded}); record it under [[accepted_pins]] with its reason first",
        )
    return pin


def _resolve_source(
    source: str, policy: ProviderPolicy, commit: str, source_url: str | None
) -> tuple[SourceInfo, CheckoutState | None]:
    claimed: str | None
    if is_url(source):
        claimed = source_url or source
        origin = None
        state = None
        kind = "url"
        # What is recorded (reports, provenance, the registry: all world-readable) never holds
        # a credential given in the URL; the clone below uses the URL as given.
        location = redact_url(source)
    else:
        checkout = Path(source).expanduser().absolute()
        if not checkout.is_dir():
            raise UsageError(f"source {source!r} is neither a git URL nor a directory")
        state = observe_checkout(checkout)
        origin = origin_url(checkout)
        claimed = source_url or origin
        kind = "local"
        location = str(checkout)
    if not policy.source_url_matches(claimed):
        raise Blocked(
            BlockerCode.SOURCE_ORIGIN_MISMATCH,
            f"source {location} claims origin {claimed!r}, policy requires {policy.source_url!r}",
        )
    assert claimed is not None
    info = SourceInfo(
        location=location,
        kind=kind,
        source_url=policy.source_url,
        source_url_explicit=source_url is not None,
        local_origin_url=origin,
        commit=commit,
        policy_commit=policy.pin,
        pin_overridden=commit != policy.pin,
        recorded_pin=recorded_pin(policy, commit),
    )
    return info, state


def _clone_at_pin(info: SourceInfo, source: str, clone: Path, commit: str) -> None:
    # --no-local: a local source is read through git's transport, which hashes every object it
    # receives; a plain local clone copies the object files as they are, so a checkout whose
    # loose object was rewritten under the same id would build other code under the pin.
    code, out = _git(
        ["clone", "--quiet", "--no-checkout", "--no-local",
         source if is_url(source) else info.location, str(clone)]
    )
    if code != 0:
        raise Blocked(BlockerCode.SOURCE_UNAVAILABLE,
                      f"git clone of {info.location} failed: {redact_url(out)[-400:]}")
    if _git(["cat-file", "-e", f"{commit}^{{commit}}"], clone)[0] != 0:
        # Not on a branch or tag: a server may still serve it by id.
        _git(["fetch", "--quiet", "origin", commit], clone)
    code, out = _git(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach",
                      commit], clone)
    if code != 0:
        raise Blocked(
            BlockerCode.SOURCE_COMMIT_MISMATCH, f"commit {commit} is not in {info.location}: {out[-300:]}"
        )
    code, head = _git(["rev-parse", "HEAD"], clone)
    if code != 0 or head != commit:
        raise Blocked(BlockerCode.SOURCE_COMMIT_MISMATCH, f"HEAD is {head!r} after checkout, not {commit}")
    # The clone must not point back at the user's checkout: a build script could follow it.
    _git(["remote", "set-url", "origin", info.source_url], clone)
    code, origin = _git(["remote", "get-url", "origin"], clone)
    if code != 0 or normalize_source_url(origin) != normalize_source_url(info.source_url):
        raise Blocked(BlockerCode.SOURCE_ORIGIN_MISMATCH, f"clone origin is {origin!r}")


def _run_steps(
    policy: ProviderPolicy, clone: Path, logs: Path, env: dict[str, str], progress: Progress,
    confine: StepConfinement,
) -> tuple[list[StepRecord], dict[str, str]]:
    """The policy's build commands, each confined: they run the source's own scripts."""
    steps: list[StepRecord] = []
    spec = source_of(policy)
    total = len(spec.commands)
    for index, argv in enumerate(spec.commands, start=1):
        executable = shutil.which(argv[0], path=env["PATH"])
        with progress.step(f"build {index}/{total}: {' '.join(argv)}"):
            if executable is None:
                raise Blocked(BlockerCode.BUILD_FAILED, f"{argv[0]!r} (build step {index}) is not on PATH")
            steps.append(run_step([executable, *argv[1:]], shown=argv, index=index, cwd=clone,
                                  env=env, logs=logs, timeout=spec.step_timeout_seconds,
                                  confine=confine))
    return steps, log_digests(steps)


def build_artifact(
    source: str,
    commit: str | None,
    policy: ProviderPolicy,
    settings: Settings,
    *,
    progress: TextIO | None = None,
    source_url: str | None = None,
    environ: Mapping[str, str] | None = None,
    on_built: Callable[[BuiltArtifact], None] | None = None,
) -> BuiltArtifact:
    """Clone, check and build; returns the artifact in the build directory (nothing stored).

    `on_built` runs while the per-commit build lock is still held (the caller stores the
    artifact there, before another build of the same commit may wipe the directory).
    """
    env_in = dict(os.environ if environ is None else environ)
    show = Progress(progress, PREFIX)
    with show.step("bun check"):
        bun = find_bun(env_in)
        bun_sha = sha256_file(Path(bun.path).resolve())
        toolchain = Toolchain(
            bun_path=bun.path, bun_version=bun.version, bun_sha256=bun_sha,
            node_version=_node_version(env_in),
        )
    spec = source_of(policy)
    pin = check_commit_arg(commit or policy.pin)
    recorded_pin(policy, pin)  # before anything is cloned
    info, checkout_before = _resolve_source(source, policy, pin, source_url)
    root = build_root(settings, policy, pin)
    with exclusive_lock(root.parent / f"{root.name}.lock"):
        with show.step(f"clone {info.location} at {pin[:12]}"):
            remove_tree(root)
            remove_tree(build_logs(root))
            root.mkdir(parents=True)
            clone = root / "src"
            _clone_at_pin(info, source, clone, pin)
        with show.step("source identity"):
            source_identity = check_source_identity(clone, spec.identity, policy.name)
        logs = build_logs(root)
        env = _build_env(root, bun, env_in)
        # Bun's own files (the PATH entry and the binary it leads to) are all a step may read
        # outside the system; the build root is all it may write.
        tools = list(dict.fromkeys([Path(bun.path).parent, Path(bun.path).resolve().parent]))
        steps, digests = _run_steps(policy, clone, logs, env, show,
                                    StepConfinement(work=root, settings=settings,
                                                    readable=tools))
        artifact = _artifact(root, Path(clone.name) / spec.artifact)
        built = BuiltArtifact(
            path=artifact,
            relative_path=spec.artifact,
            source=info,
            build_dir=root,
            steps=steps,
            toolchain=toolchain,
            source_identity=source_identity,
            checkout_before=checkout_before,
            log_digests=digests,
        )
        if on_built is not None:
            on_built(built)
    return built


def _artifact(root: Path, relative: Path) -> Path:
    """The built executable at `root/relative`, no component of it a link: the build's own
    scripts wrote that tree, and a link would have the harness copy, as itself, a file they
    chose (one they cannot read, or the store's copy a `verify` compares the rebuild with).
    No step runs any more (its uid was swept), so what is checked here stays so."""
    path = root
    for part in relative.parts:
        path = path / part
        try:
            linked = stat.S_ISLNK(os.lstat(path).st_mode)
        except OSError:
            break  # check_executable names what is missing
        if linked:
            raise Blocked(BlockerCode.DIST_MISSING,
                          f"{path} is a link: the build must leave the executable itself")
    check_executable(root / relative)
    return root / relative


def check_commit_arg(commit: str) -> str:
    try:
        return check_commit(commit)
    except ValueError as exc:
        raise UsageError(f"--commit {exc}") from None


def _store_and_admit(
    settings: Settings,
    policy: ProviderPolicy,
    *,
    candidate: Path,
    relative_path: str | None,
    report_fields: dict[str, Any],
    clock: float,
    progress: Progress,
    before_store: Callable[[], CheckoutGuard | None] = lambda: None,
) -> ProviderReport:
    """Stage + hash + probe the candidate, then store, write the reports and record admission.

    The staged copy is what gets hashed, probed and stored: the candidate itself is read once.
    `report_fields` carries what the caller knows up front (kind, provenance, source, build
    details, `started_at`); `clock` is its `time.monotonic()` start."""
    with staged_copy(settings, candidate, policy.name, policy.binary) as staged:
        with progress.step(f"binary identity ({policy.binary} --help)"):
            identity = probe_binary_identity(staged.path, policy, settings=settings)
        guard = before_store()
        with progress.step("store"), open_store_entry(settings, staged, policy.name) as entry:
            store_path = entry / policy.binary
            report = ProviderReport(
                **report_fields,
                provider=policy.name,
                status="admitted",
                invocation_id=str(uuid.uuid4()),
                finished_at=now_iso(),
                duration_ms=int((time.monotonic() - clock) * 1000),
                checkout=guard,
                binary_identity=identity,
                identity_evidence_sha256=identity.digest(),
                artifact=ArtifactInfo(
                    path=str(candidate),
                    relative_path=relative_path,
                    sha256=staged.sha256,
                    size_bytes=staged.size_bytes,
                    store_path=str(store_path),
                    store_sha256=sha256_file(store_path),
                ),
            )
            name = "build-report" if report.kind == "build" else "admission-report"
            if report.kind == "build":
                report.provenance_statement = str(entry / "provenance.intoto.json")
                atomic_write_json(entry / "provenance.intoto.json", provenance_statement(report),
                                  mode=0o444)
            atomic_write_json(entry / f"{name}.json", report.model_dump(mode="json"), mode=0o444)
            atomic_write_text(entry / f"{name}.md", render_markdown(report), mode=0o444)
    record_admission(settings, AdmissionRecord(
        sha256=report.artifact.sha256,
        provider=policy.name,
        kind=policy.distribution.kind,
        status="admitted",
        provenance_level=report.provenance_level,
        store_path=report.artifact.store_path,
        size_bytes=report.artifact.size_bytes,
        source_url=report.source.source_url,
        source_location=report.source.location,
        pin=report.source.commit,
        policy_pin=report.source.policy_commit,
        admitted_at=now_iso(),
        build_report=str(Path(report.artifact.store_path).parent / f"{name}.json"),
        identity_evidence_sha256=report.identity_evidence_sha256,
    ))
    return report


def build_provider(source: str | None, commit: str | None, policy: ProviderPolicy,
                   settings: Settings, **options: Unpack[AdmitOptions]) -> ProviderReport:
    """Build `source` (a git URL or a local checkout) at `commit` (default: the policy's pin),
    prove it, store it and admit it with provenance `built`. Raises `Blocked` on any failed
    check, with the registry unchanged; returns the build report written next to the binary."""
    if not source:
        raise UsageError("--source is required: a git URL or a local checkout of the provider")
    started, clock = now_iso(), time.monotonic()
    progress = options.get("progress", sys.stderr)
    show = Progress(progress, PREFIX)
    result: list[ProviderReport] = []

    def admit(built: BuiltArtifact) -> None:
        def guard() -> CheckoutGuard | None:
            if built.checkout_before is None:
                return None
            with show.step("source checkout unchanged"):
                return check_unchanged(built.checkout_before)

        result.append(_store_and_admit(
            settings, policy, candidate=built.path, relative_path=built.relative_path,
            progress=show, before_store=guard, clock=clock,
            report_fields={
                "kind": "build",
                "provenance_level": "built",
                "started_at": started,
                "source": built.source,
                "build_dir": str(built.build_dir),
                "commands": [list(argv) for argv in source_of(policy).commands],
                "steps": built.steps,
                "toolchain": built.toolchain,
                "source_identity": built.source_identity,
                "log_digests": built.log_digests,
            },
        ))

    build_artifact(source, commit, policy, settings, progress=progress,
                   source_url=options.get("source_url"), environ=options.get("environ"),
                   on_built=admit)
    return result[0]


def admit_prebuilt(
    binary: Path,
    source_url: str,
    commit: str,
    policy: ProviderPolicy,
    settings: Settings,
    *,
    progress: TextIO | None = sys.stderr,
) -> ProviderReport:
    """Admit a prebuilt `ca` with its claimed source and pin (provenance `asserted`): the same
    binary identity checks as a build; the claimed source URL must be the policy's."""
    pin = check_commit_arg(commit)
    binary = Path(binary).expanduser().absolute()
    started, clock = now_iso(), time.monotonic()
    recorded = recorded_pin(policy, pin)
    if not policy.source_url_matches(source_url):
        raise Blocked(
            BlockerCode.SOURCE_ORIGIN_MISMATCH,
            f"claimed source {source_url!r} is not the policy's {policy.source_url!r}",
        )
    check_executable(binary)
    source = SourceInfo(
        location=source_url, kind="url", source_url=policy.source_url,
        source_url_explicit=True, commit=pin, policy_commit=policy.pin,
        pin_overridden=pin != policy.pin, recorded_pin=recorded,
    )
    return _store_and_admit(
        settings, policy, candidate=binary, relative_path=None, progress=Progress(progress, PREFIX),
        clock=clock,
        report_fields={
            "kind": "admit", "provenance_level": "asserted", "started_at": started,
            "source": source,
        },
    )


@dataclass
class VerifyResult:
    sha256: str
    store_path: str
    store_sha256: str | None
    rebuilt_sha256: str
    build_dir: str

    @property
    def matches(self) -> bool:
        return self.sha256 == self.store_sha256 == self.rebuilt_sha256


def verify_provider(record: AdmissionRecord, policy: ProviderPolicy, settings: Settings,
                    **options: Unpack[VerifyOptions]) -> VerifyResult:
    """Rebuild `record`'s source at its commit (same deterministic path) and compare the rebuilt
    digest and the store copy's current digest with the recorded one. Writes no admission."""
    location = options.get("source") or record.source_location or record.source_url
    store = Path(record.store_path)
    store_sha = sha256_file(store) if store.is_file() else None
    rebuilt: list[str] = []
    # Hashed under the build lock: another build of the commit may replace it afterwards.
    built = build_artifact(
        location, record.pin, policy, settings, progress=options.get("progress", sys.stderr),
        source_url=record.source_url, environ=options.get("environ"),
        on_built=lambda artifact: rebuilt.append(sha256_file(artifact.path)),
    )
    if built.checkout_before is not None:
        check_unchanged(built.checkout_before)
    return VerifyResult(
        sha256=record.sha256,
        store_path=record.store_path,
        store_sha256=store_sha,
        rebuilt_sha256=rebuilt[0],
        build_dir=str(built.build_dir),
    )
