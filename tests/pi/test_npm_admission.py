"""The `npm` distribution kind end to end: the pinned pi package fetched from the registry npm is
configured with (real npm, real registry, real Bun), its integrity checked against the registry's,
installed without scripts, stored by its tree digest, recorded with its origin, re-fetched and
compared. Fail-closed: an unpinned version, a tampered tarball, another version, no npm."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from cto_harness.errors import Blocked, BlockerCode, UsageError
from cto_harness.fsutil import sha256_file, tree_digest
from cto_harness.providers.npm import (
    NpmDistribution,
    admit_npm_package,
    read_manifest,
    sri_sha512,
    verify_npm_package,
)
from cto_harness.providers.policy import load_policy, parse_policy
from cto_harness.providers.registry import list_admissions, registry_path
from pi_helpers import PI_POLICY, AdmittedPi, pi_spec
from standin_helpers import run_provider_cli, settings_for

PACKAGE = "@mariozechner/pi-coding-agent"


def registry_dist() -> dict[str, str]:
    """The registry's own answer, asked independently of the route."""
    out = subprocess.run(["npm", "view", f"{PACKAGE}@{pi_spec().version}", "dist", "--json"],
                         capture_output=True, text=True, check=True, timeout=300)
    dist = json.loads(out.stdout)
    assert isinstance(dist, dict)
    return dist


# --- the policy -----------------------------------------------------------------------------


def test_shipped_pi_policy_pins_an_exact_version() -> None:
    policy = load_policy(PI_POLICY)
    spec = policy.distribution
    assert isinstance(spec, NpmDistribution)
    assert (policy.name, policy.binary, spec.package) == ("pi", "pi", PACKAGE)
    assert policy.pin == spec.version == "0.73.1"
    assert spec.url == f"pkg:npm/{PACKAGE}" and spec.runtime == "bun"
    assert policy.binary_identity.private_dirs == ["PI_CODING_AGENT_DIR"]


@pytest.mark.parametrize("version", ["^0.73.1", "~0.73.1", "latest", "0.73", "0.73.x",
                                     ">=0.73.1", "0.73.1 || 0.74.0", "v0.73.1", ""])
def test_an_unpinned_version_is_a_policy_error(tmp_path: Path, version: str) -> None:
    text = PI_POLICY.read_text().replace('version = "0.73.1"', f'version = "{version}"')
    assert f'version = "{version}"' in text
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=r"distribution.version: .*exact version"):
        load_policy(path)


def test_an_npm_policy_names_no_url_and_no_unknown_key(tmp_path: Path) -> None:
    base = PI_POLICY.read_text()
    for extra, wanted in (('url = "https://example.invalid/x.tgz"\n', "names no url"),
                          ("scripts = true\n", "unknown key 'distribution.scripts'")):
        path = tmp_path / "policy.toml"
        path.write_text(base.replace('kind = "npm"\n', f'kind = "npm"\n{extra}'))
        with pytest.raises(UsageError, match=wanted):
            load_policy(path)


def test_sri_is_the_base64_sha512_npm_records(tmp_path: Path) -> None:
    blob = tmp_path / "x.tgz"
    blob.write_bytes(b"pi" * 1000)
    expected = "sha512-" + base64.b64encode(hashlib.sha512(b"pi" * 1000).digest()).decode()
    assert sri_sha512(blob) == expected


def _tarball(path: Path, manifest: object) -> Path:
    data = json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("package/package.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def test_a_tarball_without_a_readable_manifest_is_not_the_package(tmp_path: Path) -> None:
    assert read_manifest(_tarball(tmp_path / "ok.tgz", {"name": "x"})) == {"name": "x"}
    for bad in (_tarball(tmp_path / "list.tgz", ["x"]), tmp_path / "missing.tgz"):
        with pytest.raises(Blocked) as caught:
            read_manifest(bad)
        assert caught.value.code == BlockerCode.SOURCE_IDENTITY_MISMATCH


# --- fail-closed before anything is installed -----------------------------------------------


def test_another_version_than_the_pin_is_refused_before_any_fetch(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run_provider_cli(home, "build", "--provider", "pi", "--commit", "0.73.0")
    assert result.returncode == 2, result.stderr
    assert "blocked: source_commit_mismatch" in result.stderr
    assert not (home / "builds").exists() and not registry_path(settings_for(home), "pi").exists()


def test_no_npm_on_path_blocks_npm_missing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    environ = {**os.environ, "PATH": str(tmp_path / "empty")}
    with pytest.raises(Blocked) as caught:
        admit_npm_package(None, None, load_policy(PI_POLICY), settings_for(home), progress=None,
                          environ=environ)
    assert caught.value.code == BlockerCode.NPM_MISSING
    assert not registry_path(settings_for(home), "pi").exists()


def _tampered(original: Path, target: Path) -> Path:
    """The same package name and version with one file changed: what a compromised mirror or a
    man in the middle would serve."""
    out = io.BytesIO()
    with tarfile.open(original, "r:gz") as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            handle = src.extractfile(member) if member.isfile() else None
            data = handle.read() if handle is not None else b""
            if member.name == "package/dist/cli.js":
                data += b"\nprocess.stderr.write('owned')\n"
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if member.isfile() else None)
    target.write_bytes(gzip.compress(out.getvalue()))
    return target


def test_a_tampered_tarball_is_refused_integrity_mismatch(
    admitted_pi: AdmittedPi, tmp_path: Path
) -> None:
    tampered = _tampered(admitted_pi.tarball, tmp_path / "pi.tgz")
    assert read_manifest(tampered)["version"] == pi_spec().version  # same name@version
    home = tmp_path / "home"
    result = run_provider_cli(home, "build", "--provider", "pi", "--source", str(tampered))
    assert result.returncode == 2, result.stderr
    assert "blocked: integrity_mismatch" in result.stderr
    assert registry_dist()["integrity"][:30] in result.stderr
    assert not registry_path(settings_for(home), "pi").exists()
    assert not (home / "builds" / "pi" / f"npm-{pi_spec().version}" / "install").exists()
    assert not (home / "providers" / "pi").exists() or not any(
        p.name != ".incoming" for p in (home / "providers" / "pi").iterdir())


# --- the real admission ---------------------------------------------------------------------


def test_pinned_pi_is_admitted_with_the_registry_integrity(admitted_pi: AdmittedPi) -> None:
    report, spec = admitted_pi.report, pi_spec()
    dist = registry_dist()
    package = report.package
    assert package is not None
    assert (package.name, package.version) == (PACKAGE, spec.version)
    assert package.integrity == dist["integrity"] == sri_sha512(admitted_pi.tarball)
    assert package.tarball == dist["tarball"] and package.tarball_shasum == dist["shasum"]
    assert report.provenance_level == "fetched" and report.status == "admitted"
    # Installed without scripts, dependencies resolved and recorded.
    install = [s for s in report.steps if s.argv[:2] == ["npm", "install"]]
    assert install and "--ignore-scripts" in install[0].argv and install[0].exit_code == 0
    tree = Path(report.artifact.store_path)
    lock = json.loads((tree / "package-lock.json").read_text())
    assert lock["packages"][f"node_modules/{PACKAGE}"]["version"] == spec.version
    assert sha256_file(tree / "package-lock.json") == package.lock_sha256
    # The admission: the stored tree's digest, the entry point's and the runtime's.
    assert tree_digest(tree) == report.artifact.sha256 == admitted_pi.sha256
    entry = tree / "node_modules" / PACKAGE / package.entry
    assert package.entry == "dist/cli.js" and sha256_file(entry) == package.entry_sha256
    runtime = tree.parent / "runtime" / "bun"
    assert sha256_file(runtime) == package.runtime_sha256
    assert not entry.stat().st_mode & 0o222  # sealed read-only
    (record,) = list_admissions(settings_for(admitted_pi.home), "pi")
    assert (record.sha256, record.kind, record.pin) == (admitted_pi.sha256, "npm", spec.version)
    assert record.origin["integrity"] == dist["integrity"]
    assert record.origin["entry_sha256"] == package.entry_sha256
    assert record.origin["runtime_sha256"] == package.runtime_sha256
    # Probed under the admitted runtime, never with --version.
    assert report.binary_identity.argv[-1] == "--help" and report.binary_identity.exit_code == 0
    # The provenance statement: the tree and the entry point as subjects, the tarball by the
    # registry's integrity.
    statement = json.loads((tree.parent / "provenance.intoto.json").read_text())
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects == {"tree": admitted_pi.sha256, "dist/cli.js": package.entry_sha256}
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    integrity_hex = base64.b64decode(dist["integrity"].removeprefix("sha512-")).hex()
    assert deps[0]["digest"]["sha512"] == integrity_hex
    assert deps[0]["uri"] == f"pkg:npm/{PACKAGE}@{spec.version}"
    assert "package-lock.json" in (tree.parent / "build-report.md").read_text()


def test_refetch_reproduces_the_admitted_tree_and_catches_a_changed_store(
    admitted_pi: AdmittedPi,
) -> None:
    """One re-fetch (the expensive part: the registry asked again, `npm ci` from the recorded
    lock) with one file of the store changed: the reinstall reproduces the recorded digest and
    the registry still gives the recorded integrity, while the changed store is caught."""
    settings = settings_for(admitted_pi.home)
    policy = load_policy(PI_POLICY)
    (record,) = list_admissions(settings, "pi")
    target = Path(record.store_path) / "node_modules" / PACKAGE / "package.json"
    mode = target.stat().st_mode
    target.chmod(0o644)
    original = target.read_bytes()
    try:
        target.write_bytes(original + b"\n")
        result = verify_npm_package(record, policy, settings, progress=None)
    finally:
        target.write_bytes(original)
        target.chmod(mode)
    assert tree_digest(Path(record.store_path)) == record.sha256
    assert result.rebuilt_sha256 == record.sha256  # reproducible from the recorded lock
    assert result.fetched_integrity == record.origin["integrity"]
    assert result.store_sha256 not in (None, record.sha256)
    assert not result.matches
    # With the store intact those same digests are a match (the store digest is all that
    # differed); a missing store or another integrity never is.
    intact = result.model_copy(update={"store_sha256": record.sha256})
    assert intact.matches
    assert not intact.model_copy(update={"store_sha256": None}).matches
    assert not intact.model_copy(update={"fetched_integrity": "sha512-other"}).matches


def test_a_policy_for_another_package_is_refused_as_not_that_package(
    admitted_pi: AdmittedPi, tmp_path: Path
) -> None:
    """The real pi tarball offered for a policy naming another package: the registry has no such
    name@version, or the tarball is not it; either way nothing is admitted."""
    data = load_policy(PI_POLICY).model_dump(mode="json")
    data["distribution"] = {k: v for k, v in data["distribution"].items() if k != "url"}
    data["distribution"]["package"] = "@mariozechner/pi-agent-core"
    policy = parse_policy(data, origin="test")
    home = tmp_path / "home"
    with pytest.raises(Blocked) as caught:
        admit_npm_package(str(admitted_pi.tarball), None, policy, settings_for(home),
                          progress=None)
    assert caught.value.code in (BlockerCode.INTEGRITY_MISMATCH,
                                 BlockerCode.SOURCE_IDENTITY_MISMATCH)
    assert not registry_path(settings_for(home), "pi").exists()


# --- a registry that lists no version a dependency asks for ----------------------------------


def _install_of_a_package_depending_on(tmp_path: Path, dependency: dict[str, str]
                                       ) -> tuple[Blocked, str, list[str], list[str]]:
    """`_install` (real npm, the configured registry) of a package whose one dependency is
    `dependency`; returns the refusal, the progress text, the install folder's names and the
    stderr logs the tries left."""
    from cto_harness.progress import Progress
    from cto_harness.providers.npm import _install, _Npm, _npm_env, configured_registry, find_npm

    root = tmp_path / "root"
    root.mkdir()
    manifest = {"name": "cto-harness-etarget-probe", "version": "1.0.0",
                "dependencies": dependency}
    with tarfile.open(root / "package.tgz", "w:gz") as tar:
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("package/package.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    env = dict(os.environ)
    npm_tool = find_npm(env)
    shown = io.StringIO()
    npm = _Npm(npm_tool, configured_registry(npm_tool, env),
               _npm_env(settings_for(tmp_path / "home"), root, env), root / "logs",
               Progress(shown, "test: "), [])
    (root / "logs").mkdir()
    spec = NpmDistribution(kind="npm", package="cto-harness-etarget-probe", version="1.0.0")
    with pytest.raises(Blocked) as refused:
        _install(npm, spec, root / "install", waits=(0.0,))
    return (refused.value, shown.getvalue(), sorted(p.name for p in (root / "install").iterdir()),
            sorted(p.name for p in (root / "logs").glob("*.stderr.log")))


def test_a_dependency_version_the_registry_lacks_is_tried_again_then_named(
        tmp_path: Path) -> None:
    # A version no registry has: npm stops with ETARGET each time; the install is tried again
    # (here without a wait) and then refused, saying so.
    refused, shown, left, logs = _install_of_a_package_depending_on(
        tmp_path, {"is-number": "999.0.0"})
    assert refused.code == BlockerCode.BUILD_FAILED
    assert "notarget" in refused.message or "ETARGET" in refused.message
    assert refused.message.endswith("(tried 2 times)")
    assert "trying again in 0s" in shown
    assert left == ["package.json"]  # each try starts from the manifest alone
    assert len(logs) == 2 and "try-2" in logs[1], logs  # each try's logs kept


def test_another_install_failure_is_not_tried_again(tmp_path: Path) -> None:
    refused, shown, _, logs = _install_of_a_package_depending_on(
        tmp_path, {"cto-harness-no-such-package-7f3a9c": "1.0.0"})  # E404
    assert refused.code == BlockerCode.BUILD_FAILED
    assert "tried" not in refused.message
    assert "trying again" not in shown
    assert len(logs) == 1


def test_only_npms_own_notarget_lines_count_as_a_missing_version() -> None:
    from cto_harness.providers.npm import missing_version

    def said(tail: str) -> Blocked:
        return Blocked(BlockerCode.BUILD_FAILED, f"`npm install` exited 1: {tail}")

    assert missing_version(said("npm error notarget No matching version found for a@9.9.9."))
    assert missing_version(said("npm ERR! notarget No matching version found for a@9.9.9."))
    # A package (or a folder) named after the error is no ETARGET: names hold no space.
    assert not missing_version(said("npm error 404 'notarget@1.0.0' is not in this registry."))
    assert not missing_version(said("npm error 404 Not Found - GET /notarget-ETARGET - notarget"))


def test_the_registry_is_never_a_project_npmrc_in_the_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `provider build --provider pi` started from a folder holding a package with its own
    # .npmrc (or below a world-writable folder holding one): that file is nobody's choice of
    # registry, and the registry is the npm kind's only source of the package's bytes.
    from cto_harness.providers.npm import configured_registry, find_npm

    env = dict(os.environ)
    npm_tool = find_npm(env)
    expected = configured_registry(npm_tool, env)
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text('{"name": "p", "version": "1.0.0"}\n')
    (project / ".npmrc").write_text("registry=http://attacker.invalid/\n")
    monkeypatch.chdir(project)
    assert configured_registry(npm_tool, env) == expected != "http://attacker.invalid/"


def test_the_policy_pins_the_tarballs_bytes(admitted_pi: AdmittedPi, tmp_path: Path) -> None:
    """The npm kind's trust anchor was whichever registry answered (a mirror, a proxy, a
    project's .npmrc): it served the tarball and the integrity checked against. The shipped
    policy pins the integrity as published; a registry with other bytes for the version is
    refused before anything is fetched, and an admission of other bytes does not count."""
    from cto_harness.engines.provider import outside_policy

    shipped = load_policy(PI_POLICY)
    spec = shipped.distribution
    assert isinstance(spec, NpmDistribution) and spec.integrity
    (record,) = [r for r in list_admissions(settings_for(admitted_pi.home), "pi")
                 if r.sha256 == admitted_pi.sha256]
    assert record.origin["integrity"] == spec.integrity  # what the registry has

    data = shipped.model_dump(mode="json")
    data["distribution"] = {k: v for k, v in data["distribution"].items() if k != "url"}
    data["distribution"]["integrity"] = "sha512-" + "A" * 86 + "=="
    other = parse_policy(data, origin="test")
    home = tmp_path / "home"
    with pytest.raises(Blocked) as caught:
        admit_npm_package(str(admitted_pi.tarball), None, other, settings_for(home),
                          progress=None)
    assert caught.value.code == BlockerCode.INTEGRITY_MISMATCH
    assert "the policy pins" in str(caught.value)
    assert not registry_path(settings_for(home), "pi").exists()

    assert outside_policy(record, shipped) is None
    assert "pins" in (outside_policy(record, other) or "")
