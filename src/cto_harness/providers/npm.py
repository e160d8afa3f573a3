"""The `npm` distribution kind: a package pinned by name@version, fetched from the registry the
machine's npm is configured with, proven by the registry's `dist.integrity`, installed with
`--ignore-scripts` and admitted by the digest of the installed tree (its entry point included).

Flow of `admit_npm_package` (every failure is `Blocked(code, …)`, raised before the registry is
written; the registry is written last):

    npm + bun check -> registry (npm config) -> metadata `npm view name@version` (name, version,
    dist.integrity) -> tarball (`npm pack`, or a local file) -> its SHA-512 against
    dist.integrity -> its package.json (name, version, bin) -> `npm install --ignore-scripts`
    of the verified tarball (dependencies resolved and recorded: package-lock.json; tried again
    on ETARGET, see NOTARGET_WAITS) -> entry point
    present -> staged tree + digest + runtime copy -> `<runtime> <entry> --help` probe
    -> store/<tree-sha256>/ + reports + provenance -> admission

The store entry is self-contained: `tree/` (the install: package.json, package-lock.json,
node_modules/), `runtime/bun` (the runtime it runs under, hashed), the reports. The admission
record's `sha256` is the tree's digest (`fsutil.tree_digest`: every path, type, exec bit and
content, so the entry point with all it imports); `origin` holds the entry point's own digest,
the runtime's digest, the tarball's integrity and the lock's digest. A run re-checks all three.

`verify_npm_package` fetches the pin again (its integrity must still be the recorded one),
reinstalls it with `npm ci` from the recorded lock at the same path and compares tree digests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TextIO, Unpack
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from cto_harness import __version__
from cto_harness.clock import now_iso
from cto_harness.contracts import StrictModel, matching
from cto_harness.errors import Blocked, BlockerCode, UsageError
from cto_harness.evidence.intoto import statement
from cto_harness.fsutil import (
    atomic_write_json,
    atomic_write_text,
    exclusive_lock,
    resolve_within,
    sha256_file,
    tree_digest,
)
from cto_harness.progress import Progress
from cto_harness.providers.distribution import AdmitOptions, Distribution, VerifyOptions
from cto_harness.providers.identity import check_executable, probe_binary_identity
from cto_harness.providers.policy import ProviderPolicy
from cto_harness.providers.registry import AdmissionRecord, provider_store_dir, record_admission
from cto_harness.providers.report import (
    ArtifactInfo,
    PackageInfo,
    ProviderReport,
    SourceInfo,
    StepRecord,
    Toolchain,
    render_markdown,
)
from cto_harness.providers.steps import log_digests, run_step
from cto_harness.providers.store import remove_tree
from cto_harness.sandbox.process import run_quiet
from cto_harness.settings import Settings

PREFIX = "[provider] "
# An exact version: no range, no tag, no `latest` (semver 2.0 with optional pre-release/build).
_EXACT_VERSION = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
_PACKAGE_NAME = re.compile(r"^(?:@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*$")
# Environment npm may see besides what the harness sets: no credential, no npm token.
_NPM_PASSTHROUGH = (
    "PATH", "LANG", "LC_ALL", "TZ", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy",
    "https_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS",
)
_MANIFEST_CAP = 1 << 20
TREE = "tree"
RUNTIME = "runtime"
BUILD_TYPE = "urn:cto-harness:provider-fetch:npm-install:v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
BUILDER_ID = "urn:cto-harness:builder:local"
INSTALL_MANIFEST = {"name": "cto-harness-provider-install", "version": "0.0.0", "private": True}


def check_version(value: str) -> str:
    if not _EXACT_VERSION.fullmatch(value):
        raise ValueError(f"must be an exact version (like 1.2.3), not a range or tag: {value!r}")
    return value


class NpmDistribution(Distribution):
    """`[distribution] kind = "npm"`: `package` at exactly `version`, run under `runtime`."""

    kind: Literal["npm"]
    package: Annotated[str, matching(_PACKAGE_NAME, "not an npm package name")] = Field(
        description="the npm package name (scoped names allowed)")
    version: Annotated[str, AfterValidator(check_version)] = Field(
        description="the exact version: no range, tag or `latest`")
    runtime: Literal["bun"] = Field(default="bun", description="what runs its entry point")
    integrity: str | None = Field(
        default=None, pattern=r"^sha512-[A-Za-z0-9+/]{86}==$",
        description="the tarball's dist.integrity as published (SHA-512, SRI): the pin of its "
                    "bytes, so no registry (a mirror, a proxy, a .npmrc) can serve others")
    install_timeout_seconds: int = Field(default=900, gt=0, le=7200)
    # Not in the policy: a package URL naming it (`pkg:npm/<name>`), so reports have an origin.
    url: str = ""

    route: ClassVar[str] = "cto_harness.providers.npm:admit_npm_package"
    verify_route: ClassVar[str] = "cto_harness.providers.npm:verify_npm_package"

    @model_validator(mode="before")
    @classmethod
    def _purl(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "url" in data:
                raise ValueError("an npm distribution names no url: its origin is the registry "
                                 "npm is configured with (recorded at admission)")
            data = {**data, "url": f"pkg:npm/{data.get('package', '')}"}
        return data

    @property
    def pin(self) -> str:
        return self.version

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"


def npm_of(policy: ProviderPolicy) -> NpmDistribution:
    if not isinstance(policy.distribution, NpmDistribution):
        raise UsageError(f"provider {policy.name} is distributed as "
                         f"{policy.distribution.kind!r}, not as an npm package")
    return policy.distribution


def sri_sha512(path: Path) -> str:
    """The Subresource Integrity string (`sha512-<base64>`) npm records for a tarball."""
    digest = hashlib.sha512()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


@dataclass(frozen=True)
class Tool:
    path: str
    version: str


def _which(name: str, environ: Mapping[str, str], code: BlockerCode, hint: str) -> Tool:
    path = shutil.which(name, path=environ.get("PATH", ""))
    if path is None:
        raise Blocked(code, f"{name} is not on PATH; {hint}")
    result = run_quiet([path, "--version"], timeout=60, check=False)
    lines = (result.stdout or "").strip().splitlines()
    if result.returncode != 0 or not lines:
        raise Blocked(code, f"{path} --version failed: not a working {name}")
    return Tool(str(Path(path).absolute()), lines[0].strip())


def find_npm(environ: Mapping[str, str]) -> Tool:
    return _which("npm", environ, BlockerCode.NPM_MISSING, "install Node.js and npm")


def find_bun(environ: Mapping[str, str]) -> Tool:
    return _which("bun", environ, BlockerCode.BUN_MISSING, "install it (npm install -g bun@1)")


def configured_registry(npm: Tool, environ: Mapping[str, str]) -> str:
    """The registry the machine's npm is configured with (user, global, environment), never a
    project's: npm also reads the `.npmrc` of the package its working folder is in, and the
    folder `provider build` was started from (or a world-writable one above it) is nobody's
    choice of registry. Asked from `/`, whose config only root can write."""
    result = run_quiet([npm.path, "config", "get", "registry"], env=dict(environ), timeout=60,
                       check=False, cwd=Path("/"))
    registry = (result.stdout or "").strip()
    parts = urlsplit(registry)
    if result.returncode != 0 or parts.scheme not in ("http", "https") or not parts.netloc:
        raise Blocked(BlockerCode.SOURCE_UNAVAILABLE,
                      f"npm config names no usable registry (got {registry!r})")
    return registry if registry.endswith("/") else registry + "/"


@dataclass
class _Npm:
    """npm as the route runs it: one binary, one registry, a private HOME, a shared cache."""

    tool: Tool
    registry: str
    env: dict[str, str]
    logs: Path
    progress: Progress
    steps: list[StepRecord]

    def run(self, label: str, args: list[str], cwd: Path, timeout: float,
            code: BlockerCode) -> Path:
        """Run `npm <args> --registry R`; its stdout log, or `Blocked(code)`."""
        argv = [self.tool.path, *args, f"--registry={self.registry}"]
        with self.progress.step(label):
            step = run_step(argv, shown=["npm", *argv[1:]], index=len(self.steps) + 1, cwd=cwd,
                            env=self.env, logs=self.logs, timeout=timeout, code=code, label=label)
        self.steps.append(step)
        return Path(step.stdout_log)

    @property
    def log_digests(self) -> dict[str, str]:
        return log_digests(self.steps)


def _npm_env(settings: Settings, root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    home, tmp = root / "home", root / "tmp"
    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    env = {name: environ[name] for name in _NPM_PASSTHROUGH if name in environ}
    env.setdefault("PATH", os.defpath)
    env |= {
        "HOME": str(home), "TMPDIR": str(tmp),
        "npm_config_cache": str(settings.home / "cache" / "npm"),
        "npm_config_update_notifier": "false", "npm_config_fund": "false",
        "npm_config_audit": "false", "npm_config_ignore_scripts": "true",
        "NO_COLOR": "1",
    }
    return env


@dataclass(frozen=True)
class Fetched:
    """A tarball whose integrity matched the registry's, and what its manifest says."""

    tarball: Path
    location: str
    integrity: str
    sha256: str
    shasum: str | None
    entry: str  # the bin target, relative to the package folder


def _metadata(npm: _Npm, spec: NpmDistribution, cwd: Path) -> dict[str, Any]:
    out = npm.run(f"metadata {spec.spec}", ["view", spec.spec, "name", "version", "dist",
                                            "--json"], cwd, 300, BlockerCode.SOURCE_UNAVAILABLE)
    try:
        data = json.loads(out.read_text("utf-8"))
    except ValueError:
        data = None
    dist = data.get("dist") if isinstance(data, dict) else None
    if not isinstance(dist, dict) or not isinstance(dist.get("integrity"), str):
        raise Blocked(BlockerCode.SOURCE_UNAVAILABLE,
                      f"the registry has no single version {spec.spec} with dist.integrity")
    assert isinstance(data, dict)
    if data.get("name") != spec.package or data.get("version") != spec.version:
        raise Blocked(BlockerCode.SOURCE_IDENTITY_MISMATCH,
                      f"the registry answered {data.get('name')}@{data.get('version')} "
                      f"for {spec.spec}")
    if not dist["integrity"].startswith("sha512-"):
        raise Blocked(BlockerCode.INTEGRITY_MISMATCH,
                      f"the registry's integrity for {spec.spec} is not SHA-512: "
                      f"{dist['integrity'][:40]!r}")
    if spec.integrity is not None and dist["integrity"] != spec.integrity:
        raise Blocked(BlockerCode.INTEGRITY_MISMATCH,
                      f"the registry's dist.integrity for {spec.spec} is "
                      f"{dist['integrity'][:30]}…, the policy pins {spec.integrity[:30]}…; "
                      "nothing was fetched")
    return data


def read_manifest(tarball: Path) -> dict[str, Any]:
    """`package/package.json` from the tarball, read without extracting anything."""
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            member = archive.getmember("package/package.json")
            if not member.isfile() or member.size > _MANIFEST_CAP:
                raise KeyError("not a regular file of sane size")
            handle = archive.extractfile(member)
            assert handle is not None
            data = json.loads(handle.read())
    except (OSError, KeyError, ValueError, tarfile.TarError) as exc:
        raise Blocked(BlockerCode.SOURCE_IDENTITY_MISMATCH,
                      f"no readable package/package.json in {tarball.name}: {exc}") from None
    if not isinstance(data, dict):
        raise Blocked(BlockerCode.SOURCE_IDENTITY_MISMATCH, "package.json is not a JSON object")
    return data


def _entry_of(manifest: dict[str, Any], spec: NpmDistribution, binary: str) -> str:
    problems = [f"{key} is {manifest.get(key)!r}, not {want!r}"
                for key, want in (("name", spec.package), ("version", spec.version))
                if manifest.get(key) != want]
    bins = manifest.get("bin")
    target = bins.get(binary) if isinstance(bins, dict) else None
    if not isinstance(target, str) or not target.strip():
        problems.append(f"no bin named {binary!r} (bin is {bins!r})")
    if problems:
        raise Blocked(BlockerCode.SOURCE_IDENTITY_MISMATCH,
                      f"the tarball is not {spec.spec}: package.json " + "; ".join(problems))
    assert isinstance(target, str)
    return os.path.normpath(target).removeprefix("./")


def fetch_package(npm: _Npm, spec: NpmDistribution, binary: str, root: Path,
                  local: Path | None) -> Fetched:
    """Metadata, then the tarball (a local file, or `npm pack`), checked against the registry's
    integrity and named `root/package.tgz` (the install's lock names it by that path)."""
    data = _metadata(npm, spec, root)
    dist = data["dist"]
    target = root / "package.tgz"
    if local is not None:
        if not local.is_file():
            raise UsageError(f"--source {local} is not a tarball file")
        shutil.copyfile(local, target)
        location = str(local)
    else:
        packs = root / "pack"
        packs.mkdir()
        out = npm.run(f"fetch {spec.spec}", ["pack", spec.spec, "--pack-destination",
                                             str(packs), "--json"], root, 600,
                      BlockerCode.SOURCE_UNAVAILABLE)
        try:
            name = json.loads(out.read_text("utf-8"))[0]["filename"]
            found = resolve_within(packs, Path(str(name)).name, what="the packed tarball")
        except (ValueError, LookupError, TypeError, UsageError) as exc:
            raise Blocked(BlockerCode.SOURCE_UNAVAILABLE, f"npm pack named no tarball: {exc}"
                          ) from None
        os.replace(found, target)
        remove_tree(packs)
        location = str(dist.get("tarball") or spec.spec)
    with npm.progress.step("integrity"):
        integrity = sri_sha512(target)
        if integrity != dist["integrity"]:
            raise Blocked(BlockerCode.INTEGRITY_MISMATCH,
                          f"the tarball of {spec.spec} ({location}) hashes to {integrity[:30]}…, "
                          f"the registry's dist.integrity is {dist['integrity'][:30]}…; "
                          "nothing was installed")
    entry = _entry_of(read_manifest(target), spec, binary)
    shasum = dist.get("shasum")
    return Fetched(tarball=target, location=location, integrity=integrity,
                   sha256=sha256_file(target), shasum=shasum if isinstance(shasum, str) else None,
                   entry=entry)


# While a family of packages is being published (the AWS SDK's, say), a registry can list a
# version that depends on a sibling version it does not list yet, for a few minutes: npm then
# stops with ETARGET ("notarget"). The resolving install is tried again after these waits.
NOTARGET_WAITS = (20.0, 60.0)


# npm's own prefix for the lines of an ETARGET error (npm 10, and npm 6-9's); a package name,
# which holds no space, cannot forge it.
_NOTARGET_LINE = re.compile(r"npm (?:error|ERR!) notarget ")


def missing_version(blocked: Blocked) -> bool:
    """npm could not find a version a dependency asks for (ETARGET)."""
    return bool(_NOTARGET_LINE.search(blocked.message))


def _install(npm: _Npm, spec: NpmDistribution, install: Path, *,
             lock: tuple[Path, Path] | None = None,
             waits: tuple[float, ...] = NOTARGET_WAITS) -> None:
    """`npm install` of `../package.tgz` into `install/` (its lock resolved and written), or,
    with a recorded (package.json, package-lock.json), `npm ci` from exactly that lock."""
    install.mkdir()
    common = ["--ignore-scripts", "--omit=dev", "--no-audit", "--no-fund"]
    if lock is None:
        atomic_write_json(install / "package.json", INSTALL_MANIFEST)
        for attempt, wait in enumerate((*waits, None), start=1):
            try:
                # A label of its own per try: each try's logs are kept, none overwritten.
                npm.run((f"install (try {attempt}) " if attempt > 1 else "install ") + spec.spec,
                        ["install", *common, "--save-exact", "../package.tgz"],
                        install, spec.install_timeout_seconds, BlockerCode.BUILD_FAILED)
                return
            except Blocked as blocked:
                if wait is None or not missing_version(blocked):
                    if attempt == 1:
                        raise
                    raise Blocked(blocked.code, f"{blocked.message} (tried {attempt} times)",
                                  marker=blocked.marker) from blocked
                npm.progress.line(f"the registry lists no version a dependency asks for "
                                  f"(ETARGET; usually for minutes while packages are being "
                                  f"published): trying again in {wait:g}s")
                time.sleep(wait)
                remove_tree(install / "node_modules")
                (install / "package-lock.json").unlink(missing_ok=True)
                atomic_write_json(install / "package.json", INSTALL_MANIFEST)
    else:
        shutil.copyfile(lock[0], install / "package.json")
        shutil.copyfile(lock[1], install / "package-lock.json")
        npm.run(f"reinstall {spec.spec} from the recorded lock", ["ci", *common], install,
                spec.install_timeout_seconds, BlockerCode.BUILD_FAILED)


def entry_path(tree: Path, spec: NpmDistribution, entry: str) -> Path:
    package = resolve_within(tree / "node_modules", spec.package, what="the package folder")
    return resolve_within(package, entry, what="the entry point")


def _seal_read_only(root: Path) -> None:
    """Files lose their write bits (execute bits kept: they are part of the digest)."""
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & 0o555)


@dataclass(frozen=True)
class NpmPaths:
    """A store entry's parts: the installed tree, the entry point, the runtime."""

    entry_dir: Path

    @property
    def tree(self) -> Path:
        return self.entry_dir / TREE

    @property
    def runtime(self) -> Path:
        return self.entry_dir / RUNTIME / "bun"


def build_root(settings: Settings, policy: ProviderPolicy, version: str) -> Path:
    """`$CTO_HARNESS_HOME/builds/<provider>/npm-<version>`: the same path for every fetch of a
    version (the install's lock names the tarball relative to it)."""
    return settings.home / "builds" / policy.name / f"npm-{version}"


@dataclass(frozen=True)
class _Route:
    """What both npm routes start from: the pinned spec, the tools, the registry, progress."""

    spec: NpmDistribution
    npm: Tool
    bun: Tool
    registry: str
    show: Progress
    environ: dict[str, str]


def _prepare(policy: ProviderPolicy, pin: str | None, environ: Mapping[str, str] | None,
             progress: TextIO | None) -> _Route:
    spec = npm_of(policy)
    if pin is not None and pin != spec.version:
        raise Blocked(BlockerCode.SOURCE_COMMIT_MISMATCH,
                      f"version {pin} is not the policy's pin {spec.version}: change the "
                      "policy to admit another version")
    env_in = dict(os.environ if environ is None else environ)
    show = Progress(progress, PREFIX)
    with show.step("npm and bun check"):
        npm_tool, bun = find_npm(env_in), find_bun(env_in)
        registry = configured_registry(npm_tool, env_in)
    return _Route(spec, npm_tool, bun, registry, show, env_in)


@contextmanager
def _fresh_install(route: _Route, policy: ProviderPolicy, settings: Settings, local: Path | None,
                   *, lock: tuple[Path, Path] | None = None
                   ) -> Iterator[tuple[Path, _Npm, Fetched]]:
    """Under the version's lock, its build folder wiped and filled again: the tarball fetched
    and checked against the registry's integrity (`local`: that file instead), installed into
    `<root>/install` (from `lock`, the recorded package.json and lock, with `npm ci`). Yields the
    folder, the npm runner (its steps and logs) and what was fetched."""
    root = build_root(settings, policy, route.spec.version)
    with exclusive_lock(root.parent / f"{root.name}.lock"):
        remove_tree(root)
        (root / "logs").mkdir(parents=True)
        npm = _Npm(route.npm, route.registry, _npm_env(settings, root, route.environ),
                   root / "logs", route.show, [])
        fetched = fetch_package(npm, route.spec, policy.binary, root, local)
        _install(npm, route.spec, root / "install", lock=lock)
        yield root, npm, fetched


def admit_npm_package(source: str | None, pin: str | None, policy: ProviderPolicy,
                      settings: Settings, **options: Unpack[AdmitOptions]) -> ProviderReport:
    """Fetch `policy`'s package at its pinned version (or take `source`, a local tarball, which
    must then match the registry's integrity), install it, probe it, store it, admit it."""
    if options.get("source_url") is not None:
        raise UsageError("--source-url does not apply to an npm package: its origin is the "
                         "registry npm is configured with")
    started, clock = now_iso(), time.monotonic()
    route = _prepare(policy, pin, options.get("environ"), options.get("progress", sys.stderr))
    spec, bun, show = route.spec, route.bun, route.show
    local = Path(source).expanduser().absolute() if source else None
    with _fresh_install(route, policy, settings, local) as (root, npm, fetched):
        check_executable(entry_path(root / "install", spec, fetched.entry))
        staging = provider_store_dir(settings, policy.name) / ".incoming" / uuid.uuid4().hex
        staging.mkdir(parents=True, mode=0o700)
        try:
            parts = NpmPaths(staging)
            os.replace(root / "install", parts.tree)
            parts.runtime.parent.mkdir()
            shutil.copyfile(Path(bun.path).resolve(), parts.runtime)
            parts.runtime.chmod(0o555)
            _seal_read_only(staging)
            with show.step("digests"):
                digest = tree_digest(parts.tree)
                entry = entry_path(parts.tree, spec, fetched.entry)
                entry_sha = sha256_file(entry)
                runtime_sha = sha256_file(parts.runtime)
                lock_sha = sha256_file(parts.tree / "package-lock.json")
            with show.step(f"binary identity (bun {policy.binary} --help)"):
                identity = probe_binary_identity(entry, policy, runtime=[str(parts.runtime)],
                                                readable=[parts.tree, parts.runtime],
                                                settings=settings)
            store = NpmPaths(provider_store_dir(settings, policy.name) / digest)
            with show.step("store"):
                remove_tree(store.entry_dir)
                os.replace(staging, store.entry_dir)
                store_digest = tree_digest(store.tree)
        finally:
            remove_tree(staging)
        package = PackageInfo(
            name=spec.package, version=spec.version, registry=route.registry,
            tarball=fetched.location, integrity=fetched.integrity,
            tarball_sha256=fetched.sha256, tarball_shasum=fetched.shasum,
            entry=fetched.entry, entry_sha256=entry_sha, lock_sha256=lock_sha,
            runtime="bun", runtime_path=str(store.runtime), runtime_sha256=runtime_sha,
            runtime_version=bun.version, npm_version=route.npm.version,
        )
        report = ProviderReport(
            kind="build", provider=policy.name, status="admitted", provenance_level="fetched",
            invocation_id=str(uuid.uuid4()), started_at=started, finished_at=now_iso(),
            duration_ms=int((time.monotonic() - clock) * 1000),
            source=SourceInfo(location=fetched.location, kind="local" if local else "url",
                              source_url=spec.url, source_url_explicit=False,
                              commit=spec.version, policy_commit=spec.version,
                              pin_overridden=False),
            build_dir=str(root),
            commands=[list(step.argv) for step in npm.steps],
            steps=npm.steps,
            toolchain=Toolchain(bun_path=bun.path, bun_version=bun.version,
                                bun_sha256=runtime_sha,
                                node_version=_node_version(route.environ)),
            binary_identity=identity, identity_evidence_sha256=identity.digest(),
            artifact=ArtifactInfo(path=str(root / "install"), relative_path=TREE,
                                  sha256=digest, size_bytes=_tree_size(store.tree),
                                  store_path=str(store.tree), store_sha256=store_digest),
            log_digests=npm.log_digests, package=package,
        )
        _write_reports(store.entry_dir, report)
    if store_digest != digest:
        raise Blocked(BlockerCode.BUILD_FAILED,
                      f"the stored tree hashes to {store_digest}, the staged one to {digest}")
    record_admission(settings, AdmissionRecord(
        sha256=digest, provider=policy.name, kind=spec.kind, status="admitted",
        provenance_level="fetched", store_path=str(store.tree),
        size_bytes=report.artifact.size_bytes, source_url=spec.url,
        source_location=str(local) if local else None, pin=spec.version,
        policy_pin=spec.version, admitted_at=now_iso(),
        build_report=str(store.entry_dir / "build-report.json"),
        identity_evidence_sha256=report.identity_evidence_sha256,
        origin={"registry": route.registry, "integrity": fetched.integrity,
                "tarball_sha256": fetched.sha256, "entry": fetched.entry,
                "entry_sha256": entry_sha, "lock_sha256": lock_sha, "runtime": "bun",
                "runtime_sha256": runtime_sha, "runtime_version": bun.version},
    ))
    return report


def _tree_size(root: Path) -> int:
    return sum((Path(d) / f).lstat().st_size for d, _dirs, files in os.walk(root) for f in files)


def _node_version(environ: Mapping[str, str]) -> str | None:
    """Recorded (npm runs under it); the provider itself runs under the stored Bun."""
    try:
        return _which("node", environ, BlockerCode.NPM_MISSING, "install Node.js").version
    except Blocked:
        return None


def _write_reports(entry_dir: Path, report: ProviderReport) -> None:
    entry_dir.chmod(0o755)
    try:
        report.provenance_statement = str(entry_dir / "provenance.intoto.json")
        atomic_write_json(entry_dir / "provenance.intoto.json", provenance_statement(report),
                          mode=0o444)
        atomic_write_json(entry_dir / "build-report.json", report.model_dump(mode="json"),
                          mode=0o444)
        atomic_write_text(entry_dir / "build-report.md", render_markdown(report), mode=0o444)
    finally:
        entry_dir.chmod(0o555)


def provenance_statement(report: ProviderReport) -> dict[str, Any]:
    """An in-toto Statement v1 (SLSA Provenance v1 predicate) for a fetched, installed package:
    the subject is the installed tree, the resolved dependencies the tarball (by the registry's
    integrity), the lock and the runtime."""
    package = report.package
    assert package is not None
    integrity_hex = base64.b64decode(package.integrity.removeprefix("sha512-")).hex()
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {"package": package.name, "version": package.version,
                                   "registry": package.registry, "entry": package.entry},
            "internalParameters": {"policy": {"name": report.provider,
                                              "version": report.source.policy_commit},
                                   "commands": report.commands, "buildDir": report.build_dir,
                                   "npmVersion": package.npm_version},
            "resolvedDependencies": [
                {"uri": f"pkg:npm/{package.name}@{package.version}",
                 "downloadLocation": package.tarball,
                 "digest": {"sha512": integrity_hex, "sha256": package.tarball_sha256}},
                {"name": "package-lock.json", "digest": {"sha256": package.lock_sha256}},
                {"name": package.runtime,
                 "uri": f"pkg:npm/bun@{package.runtime_version}",
                 "digest": {"sha256": package.runtime_sha256}},
            ],
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID, "version": {"cto-harness": __version__}},
            "metadata": {"invocationId": report.invocation_id, "startedOn": report.started_at,
                         "finishedOn": report.finished_at},
            "byproducts": [{"name": name, "digest": {"sha256": digest}}
                           for name, digest in sorted(report.log_digests.items())],
        },
    }
    subjects = {TREE: report.artifact.sha256, package.entry: package.entry_sha256}
    return statement(subjects, SLSA_PROVENANCE_V1, predicate)


class NpmVerifyResult(StrictModel):
    """`provider verify` of an npm admission: the recorded, stored and re-fetched tree digests,
    and the registry's integrity now against the recorded one."""

    sha256: str
    store_path: str
    store_sha256: str | None
    rebuilt_sha256: str
    build_dir: str
    recorded_integrity: str
    fetched_integrity: str

    @property
    def matches(self) -> bool:
        return (self.sha256 == self.store_sha256 == self.rebuilt_sha256
                and self.recorded_integrity == self.fetched_integrity)


def verify_npm_package(record: AdmissionRecord, policy: ProviderPolicy, settings: Settings,
                       **options: Unpack[VerifyOptions]) -> NpmVerifyResult:
    """Fetch the recorded version again (integrity checked against the registry, which must
    still give the recorded integrity), `npm ci` it from the recorded lock at the same path,
    and compare the recorded, stored and reinstalled tree digests. Writes no admission."""
    route = _prepare(policy, record.pin, options.get("environ"),
                     options.get("progress", sys.stderr))
    store = Path(record.store_path)
    lock = (store / "package.json", store / "package-lock.json")
    if not all(path.is_file() for path in lock):
        raise Blocked(BlockerCode.DIST_MISSING, f"the stored install {store} has no recorded lock")
    store_sha = tree_digest(store) if store.is_dir() else None
    source = options.get("source")
    local = Path(source).expanduser().absolute() if source else None
    with _fresh_install(route, policy, settings, local, lock=lock) as (root, _npm, fetched), \
            route.show.step("digest"):
        rebuilt = tree_digest(root / "install")
    return NpmVerifyResult(
        sha256=record.sha256, store_path=record.store_path, store_sha256=store_sha,
        rebuilt_sha256=rebuilt, build_dir=str(root),
        recorded_integrity=record.origin.get("integrity", ""),
        fetched_integrity=fetched.integrity,
    )
