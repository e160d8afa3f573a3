"""The provider build route end to end: real Bun, real git, real subprocesses, the stand-in
source (tests/standin) and its variants. Every blocked case: exit 2 with its code, the registry
byte-for-byte unchanged, the source checkout unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import AdmittedStandin
from cto_harness.fsutil import tree_digest
from cto_harness.providers.build import build_logs
from cto_harness.providers.registry import (
    list_admissions,
    lookup_admission,
    record_admission,
    registry_path,
)
from cto_harness.providers.store import MAX_BINARY_BYTES
from standin_helpers import (
    POLICY_SOURCE_URL,
    STANDIN_PIN_REASON,
    git,
    head_commit,
    make_admission_record,
    make_standin_repo,
    run_provider_cli,
    set_script,
    settings_for,
    write_policy_accepting,
    write_script_binary,
)

PIN = "7959ac917cdeb0983b4aaa20bb9f42021747fed8"


def checkout_digest(repo: Path) -> tuple[str, str, str]:
    return (
        tree_digest(repo, exclude=frozenset({".git"})),
        tree_digest(repo / ".git"),
        git(repo, "--no-optional-locks", "status", "--porcelain", "--untracked-files=all"),
    )


@pytest.fixture
def seeded_home(tmp_path: Path) -> Path:
    """A home whose registry already holds one record, so "unchanged" means something."""
    home = tmp_path / "home"
    record_admission(settings_for(home), make_admission_record("f" * 64))
    return home


def assert_blocked(
    result: subprocess.CompletedProcess[str], code: str, home: Path, registry_before: bytes,
    repo: Path | None = None, repo_before: tuple[str, str, str] | None = None,
) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert f"blocked: {code}: " in result.stderr, result.stderr
    assert registry_path(settings_for(home)).read_bytes() == registry_before
    store = registry_path(settings_for(home)).parent
    assert [p.name for p in store.iterdir() if len(p.name) == 64] == []  # nothing stored
    if repo is not None:
        assert checkout_digest(repo) == repo_before


def build_cli(home: Path, repo: Path, *extra: str, env: dict[str, str] | None = None):
    """`provider build` of the stand-in at its HEAD, with a policy recording that commit."""
    commit = head_commit(repo)
    policy = write_policy_accepting(repo.parent / f"policy-{commit[:12]}.toml", commit)
    return run_provider_cli(
        home, "build", "--source", str(repo), "--commit", commit, "--policy", str(policy),
        *extra, env=env,
    )


def blocked_build(tmp_path: Path, home: Path, code: str, **repo_args: object) -> None:
    repo = make_standin_repo(tmp_path, **repo_args)  # type: ignore[arg-type]
    before_repo = checkout_digest(repo)
    before_registry = registry_path(settings_for(home)).read_bytes()
    result = build_cli(home, repo)
    assert_blocked(result, code, home, before_registry, repo, before_repo)


# --- the happy path -------------------------------------------------------------------------


@pytest.mark.slow
def test_standin_is_built_and_admitted(admitted_standin: AdmittedStandin) -> None:
    home, binary, sha, _source, commit = admitted_standin
    entry = binary.parent
    assert binary == home / "providers" / "case" / sha / "ca"
    assert hashlib.sha256(binary.read_bytes()).hexdigest() == sha
    assert stat.S_IMODE(binary.stat().st_mode) == 0o555
    assert stat.S_IMODE(entry.stat().st_mode) == 0o555
    assert binary.stat().st_size > 50_000_000  # a real Bun-compiled executable

    report = json.loads((entry / "build-report.json").read_text())
    assert report["status"] == "admitted" and report["provenance_level"] == "built"
    assert report["source"]["source_url"] == POLICY_SOURCE_URL
    assert report["source"]["commit"] == commit and report["source"]["policy_commit"] == PIN
    assert report["source"]["pin_overridden"] is True
    assert report["source"]["recorded_pin"] == {
        "commit": commit, "kind": "accepted", "reason": STANDIN_PIN_REASON}
    assert report["commands"] == [["bun", "install"], ["bun", "run", "build:binary"]]
    assert report["artifact"]["sha256"] == report["artifact"]["store_sha256"] == sha
    assert report["artifact"]["path"].endswith(f"builds/case/{commit}/src/dist/ca")
    bun = shutil.which("bun")
    assert bun is not None
    assert report["toolchain"]["bun_version"] == subprocess.run(
        [bun, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert "node_version" in report["toolchain"]
    assert [s["exit_code"] for s in report["steps"]] == [0, 0]
    assert report["source_identity"]["manifest"] == "package.json"
    assert report["source_identity"]["fields"] == {"name": "case", "private": True}
    assert report["source_identity"]["bin"] == {"ca": "dist/ca"}
    assert report["binary_identity"]["markers_found"] == ["Usage: ca <command>"]
    assert report["checkout"]["unchanged"] is True
    for name, digest in report["log_digests"].items():  # `logs/<file>`: the build's logs
        log = build_logs(Path(report["build_dir"])) / Path(name).name
        assert hashlib.sha256(log.read_bytes()).hexdigest() == digest
    assert "# Provider build report" in (entry / "build-report.md").read_text()

    statement = json.loads((entry / "provenance.intoto.json").read_text())
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["subject"] == [{"name": "ca", "digest": {"sha256": sha}}]
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["commit"] == commit
    assert definition["internalParameters"]["policy"]["recordedPin"]["kind"] == "accepted"
    assert definition["resolvedDependencies"][0] == {
        "uri": f"git+{POLICY_SOURCE_URL}@{commit}", "digest": {"gitCommit": commit},
    }
    run = statement["predicate"]["runDetails"]
    assert run["builder"]["id"] and run["metadata"]["invocationId"]
    assert run["metadata"]["startedOn"] <= run["metadata"]["finishedOn"]
    assert {b["name"] for b in run["byproducts"]} == set(report["log_digests"])

    shown = run_provider_cli(home, "show", "--json")
    assert shown.returncode == 0, shown.stderr
    (record,) = json.loads(shown.stdout)["admissions"]
    assert record["sha256"] == sha and record["status"] == "admitted"
    assert record["provenance_level"] == "built" and record["store_path"] == str(binary)
    one = run_provider_cli(home, "show", sha[:12], "--json")
    assert json.loads(one.stdout)["sha256"] == sha
    table = run_provider_cli(home, "list")
    assert sha[:16] in table.stdout and "built" in table.stdout

    found = lookup_admission(settings_for(home), binary)
    assert found is not None and found.pin == commit


@pytest.mark.slow
def test_build_never_touches_the_checkout_even_though_building_there_mutates_it(
    admitted_standin: AdmittedStandin, tmp_path: Path
) -> None:
    _home, binary, _sha, source, _commit = admitted_standin
    report = json.loads((binary.parent / "build-report.json").read_text())
    before = report["checkout"]["before"]
    assert tree_digest(source, exclude=frozenset({".git"})) == before["worktree_digest"]
    assert tree_digest(source / ".git") == before["git_dir_digest"]
    assert before["porcelain_status"] == [] and report["checkout"]["after"] == before
    # The same build steps run inside a copy of the checkout do rewrite a tracked file.
    copy = tmp_path / "in-place"
    shutil.copytree(source, copy)
    bun = shutil.which("bun")
    assert bun is not None
    subprocess.run([bun, "run", "prebuild:binary"], cwd=copy, check=True, capture_output=True)
    assert git(copy, "status", "--porcelain") == "M src/generated/package-assets.ts"


@pytest.mark.slow
def test_verify_matches_then_a_tampered_store_binary_is_refused(
    admitted_standin: AdmittedStandin, tmp_path: Path
) -> None:
    # The session's build (the users' `provider build`), verified from a home of its own: the
    # same record, its store binary a private copy (tampered below; the session's stays intact).
    sha = admitted_standin.sha256
    home = tmp_path / "home"
    (record,) = [r for r in list_admissions(settings_for(admitted_standin.home))
                 if r.sha256 == sha]
    store = home / "providers" / "case" / sha / "ca"
    store.parent.mkdir(parents=True)
    shutil.copy2(admitted_standin.binary, store)
    record_admission(settings_for(home), record.model_copy(update={"store_path": str(store)}))
    assert lookup_admission(settings_for(home), store) is not None

    policy = ("--policy", str(write_policy_accepting(tmp_path / "policy.toml",
                                                     admitted_standin.commit)))
    verified = run_provider_cli(home, "verify", sha, *policy)
    assert verified.returncode == 0, verified.stderr  # a byte-identical rebuild
    assert "digests match" in verified.stdout

    store.chmod(0o755)
    with open(store, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\x00tampered\x00")
    tampered = hashlib.sha256(store.read_bytes()).hexdigest()
    assert lookup_admission(settings_for(home), store) is None

    differs = run_provider_cli(home, "verify", sha, "--json", *policy)
    assert differs.returncode == 1, differs.stderr
    result = json.loads(differs.stdout)
    assert result["matches"] is False
    assert result["recorded_sha256"] == result["rebuilt_sha256"] == sha
    assert result["store_sha256"] == tampered
    text = run_provider_cli(home, "verify", sha, *policy)
    assert text.returncode == 1 and sha in text.stdout and tampered in text.stdout


def test_admit_prebuilt_records_asserted_provenance(
    admitted_standin: AdmittedStandin, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    result = run_provider_cli(
        home, "admit", "--binary", str(admitted_standin.binary),
        "--source-url", "https://github.com/workos/case", "--commit", PIN, "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["provenance_level"] == "asserted" and report["kind"] == "admit"
    assert report["artifact"]["sha256"] == admitted_standin.sha256
    (record,) = list_admissions(settings_for(home))
    assert record.provenance_level == "asserted" and record.pin == PIN
    assert Path(record.build_report).name == "admission-report.json"
    assert not (Path(record.store_path).parent / "provenance.intoto.json").exists()
    assert lookup_admission(settings_for(home), Path(record.store_path)) == record


@pytest.mark.parametrize(
    "case, code",
    [
        ("missing", "dist_missing"),
        ("not-executable", "not_executable"),
        ("no-markers", "identity_mismatch"),
        ("wrong-url", "source_origin_mismatch"),
        ("bad-commit", None),
        # A sparse file past the size a binary may be: refused before a byte is copied.
        ("too-big", "provider_not_admitted"),
    ],
)
def test_admit_blocks(seeded_home: Path, tmp_path: Path, case: str, code: str | None) -> None:
    binary = write_script_binary(tmp_path / "ca")
    url, commit = POLICY_SOURCE_URL, PIN
    if case == "missing":
        binary = tmp_path / "absent" / "ca"
    elif case == "not-executable":
        binary.chmod(0o644)
    elif case == "no-markers":
        write_script_binary(binary, help_text="Usage: case <string>\n")
    elif case == "wrong-url":
        url = "https://github.com/someone/case.git"
    elif case == "bad-commit":
        commit = "HEAD"
    elif case == "too-big":
        os.truncate(binary, MAX_BINARY_BYTES + 1)
    before = registry_path(settings_for(seeded_home)).read_bytes()
    result = run_provider_cli(
        seeded_home, "admit", "--binary", str(binary), "--source-url", url, "--commit", commit
    )
    if code is None:
        assert result.returncode == 64 and "commit" in result.stderr
        assert registry_path(settings_for(seeded_home)).read_bytes() == before
    else:
        assert_blocked(result, code, seeded_home, before)


# --- blocked builds ---------------------------------------------------------------------------


def _npm_case_impostor(repo: Path) -> None:
    # What the unrelated npm `case` package looks like: a library, public, no executable.
    (repo / "package.json").write_text(json.dumps({
        "name": "case", "version": "1.6.3", "description": "Extensible string utility",
        "main": "dist/Case.js", "license": "MIT",
        "scripts": {"build:binary": "bun build --compile src/cli.ts --outfile dist/ca"},
    }, indent=2))


def test_npm_case_impostor_is_refused_before_building(seeded_home: Path, tmp_path: Path) -> None:
    blocked_build(tmp_path, seeded_home, "source_identity_mismatch", mutate=_npm_case_impostor)
    # Refused before any build step: no log was written.
    (commit_dir,) = (seeded_home / "builds" / "case").glob("[0-9a-f]*[0-9a-f]")
    assert not commit_dir.with_name(f"{commit_dir.name}.logs").exists()


@pytest.mark.parametrize("field, value", [("private", None), ("bin", None), ("bin", "dist/ca")])
def test_package_json_must_be_private_with_a_ca_bin(
    seeded_home: Path, tmp_path: Path, field: str, value: object
) -> None:
    def mutate(repo: Path) -> None:
        data = json.loads((repo / "package.json").read_text())
        if value is None:
            data.pop(field)
        else:
            data[field] = value  # a string bin names the package ("case"), not "ca"
        (repo / "package.json").write_text(json.dumps(data))

    blocked_build(tmp_path, seeded_home, "source_identity_mismatch", mutate=mutate)


def test_commit_not_in_the_source_is_refused(seeded_home: Path, tmp_path: Path) -> None:
    # Recorded as a pin, but not in the source: refused at checkout.
    repo = make_standin_repo(tmp_path)
    policy = write_policy_accepting(tmp_path / "policy.toml", "1" * 40)
    before_repo, before_registry = checkout_digest(repo), registry_path(
        settings_for(seeded_home)).read_bytes()
    result = run_provider_cli(seeded_home, "build", "--source", str(repo), "--commit", "1" * 40,
                              "--policy", str(policy))
    assert_blocked(result, "source_commit_mismatch", seeded_home, before_registry, repo,
                   before_repo)
    assert "is not in" in result.stderr


def test_unrecorded_pin_is_refused_before_anything_is_cloned(
    seeded_home: Path, tmp_path: Path
) -> None:
    # The commit is in the source, but the policy does not record it: a flag alone is not a pin.
    repo = make_standin_repo(tmp_path)
    before_registry = registry_path(settings_for(seeded_home)).read_bytes()
    result = run_provider_cli(seeded_home, "build", "--source", str(repo), "--commit",
                              head_commit(repo))
    assert_blocked(result, "source_commit_mismatch", seeded_home, before_registry)
    assert "not a pin recorded in the provider policy" in result.stderr
    assert not (seeded_home / "builds").exists()
    # The same for a prebuilt binary's claimed pin.
    binary = write_script_binary(tmp_path / "ca")
    admitted = run_provider_cli(seeded_home, "admit", "--binary", str(binary), "--source-url",
                                POLICY_SOURCE_URL, "--commit", head_commit(repo))
    assert_blocked(admitted, "source_commit_mismatch", seeded_home, before_registry)


def test_default_pin_absent_from_a_standin_is_refused(seeded_home: Path, tmp_path: Path) -> None:
    repo = make_standin_repo(tmp_path)
    before_registry = registry_path(settings_for(seeded_home)).read_bytes()
    result = run_provider_cli(seeded_home, "build", "--source", str(repo))  # policy's pin
    assert_blocked(result, "source_commit_mismatch", seeded_home, before_registry)
    assert PIN in result.stderr


def test_checkout_of_another_repository_is_refused(seeded_home: Path, tmp_path: Path) -> None:
    blocked_build(tmp_path, seeded_home, "source_origin_mismatch",
                  origin="https://github.com/someone/case.git")
    blocked_build(tmp_path, seeded_home, "source_origin_mismatch", origin=None)


def test_url_source_must_be_the_policy_url(seeded_home: Path, tmp_path: Path) -> None:
    repo = make_standin_repo(tmp_path)
    before = registry_path(settings_for(seeded_home)).read_bytes()
    policy = write_policy_accepting(tmp_path / "policy.toml", head_commit(repo))
    result = run_provider_cli(
        seeded_home, "build", "--source", repo.as_uri(), "--commit", head_commit(repo),
        "--policy", str(policy),
    )
    assert_blocked(result, "source_origin_mismatch", seeded_home, before)
    assert not (seeded_home / "builds").exists()


def test_missing_bun_blocks_before_anything_is_cloned(seeded_home: Path, tmp_path: Path) -> None:
    repo = make_standin_repo(tmp_path)
    before_repo = checkout_digest(repo)
    before_registry = registry_path(settings_for(seeded_home)).read_bytes()
    tools = tmp_path / "path-without-bun"
    tools.mkdir()
    git_path = shutil.which("git")
    assert git_path is not None
    (tools / "git").symlink_to(git_path)
    env = {**os.environ, "PATH": str(tools)}
    result = build_cli(seeded_home, repo, env=env)
    assert_blocked(result, "bun_missing", seeded_home, before_registry, repo, before_repo)
    assert not (seeded_home / "builds").exists()


def test_build_without_dist_ca_is_refused(seeded_home: Path, tmp_path: Path) -> None:
    blocked_build(
        tmp_path, seeded_home, "dist_missing",
        mutate=lambda repo: set_script(repo, "build:binary", "bun scripts/gen-assets.ts"),
    )


def test_non_executable_artifact_is_refused(seeded_home: Path, tmp_path: Path) -> None:
    def mutate(repo: Path) -> None:
        (repo / "scripts" / "plain-dist.ts").write_text(
            'import { mkdirSync, writeFileSync } from "node:fs";\n'
            'mkdirSync("dist", { recursive: true });\n'
            'writeFileSync("dist/ca", "#!/bin/sh\\necho Usage: ca <command>\\n",\n'
            "  { mode: 0o644 });\n"
        )
        set_script(repo, "build:binary", "bun scripts/plain-dist.ts")

    blocked_build(tmp_path, seeded_home, "not_executable", mutate=mutate)


def test_failing_build_step_is_refused(seeded_home: Path, tmp_path: Path) -> None:
    blocked_build(
        tmp_path, seeded_home, "build_failed",
        mutate=lambda repo: set_script(repo, "build:binary", "bun scripts/does-not-exist.ts"),
    )


@pytest.mark.slow
def test_binary_whose_help_lacks_the_markers_is_refused(seeded_home: Path, tmp_path: Path):
    blocked_build(tmp_path, seeded_home, "identity_mismatch", scenario="help-without-markers")


@pytest.mark.slow
def test_build_steps_reach_nothing_outside_their_build_folder(seeded_home: Path,
                                                              tmp_path: Path) -> None:
    # The source's own scripts run in the build (here its prebuild): they tried to write into
    # the user's checkout, read the evidence signing key and forge the admission registry. Each
    # step runs confined (a sandbox uid, the harness's home hidden, only the build folder
    # writable): every attempt is refused, and the build itself still succeeds.
    from cto_harness.evidence.signing import PRIVATE_KEY, load_or_create_key

    keys = settings_for(seeded_home).keys_dir
    load_or_create_key(keys)
    key_before = (keys / PRIVATE_KEY).read_bytes()
    registry = registry_path(settings_for(seeded_home))
    target = tmp_path / "standin-escape" / "ESCAPED.txt"
    attempts = {
        "checkout": f"writeFileSync({json.dumps(str(target))}, 'a build script wrote here')",
        "key": f"readFileSync({json.dumps(str(keys / PRIVATE_KEY))})",
        "registry": f"appendFileSync({json.dumps(str(registry))}, 'forged')",
    }

    def mutate(repo: Path) -> None:
        lines = ['import { appendFileSync, readFileSync, writeFileSync } from "node:fs";']
        lines += [f'try {{ {code}; console.log("{name}: reached"); }} '
                  f'catch {{ console.log("{name}: refused"); }}'
                  for name, code in attempts.items()]
        (repo / "scripts" / "escape.ts").write_text("\n".join(lines) + "\n")
        set_script(repo, "prebuild:binary", "bun scripts/escape.ts && bun scripts/gen-assets.ts")

    repo = make_standin_repo(tmp_path, scenario="escape", mutate=mutate)
    assert target.parent == repo
    before = registry.read_bytes()
    result = build_cli(seeded_home, repo, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (step,) = [s for s in report["steps"] if s["argv"][:2] == ["bun", "run"]]
    said = Path(step["stdout_log"]).read_text()
    assert [line for line in said.splitlines() if line.endswith(("reached", "refused"))] == [
        "checkout: refused", "key: refused", "registry: refused"]
    assert not target.exists()
    assert (keys / PRIVATE_KEY).read_bytes() == key_before
    assert registry.read_bytes() != before  # the build's own admission, written by the harness
    assert b"forged" not in registry.read_bytes()


def test_explicit_source_url_stands_for_a_checkout_without_origin(
    seeded_home: Path, tmp_path: Path
) -> None:
    # No origin: refused by default, accepted with --source-url (then stopped by the next gate,
    # which proves the origin gate was passed without paying for a full build).
    repo = make_standin_repo(
        tmp_path, origin=None,
        mutate=lambda r: set_script(r, "build:binary", "bun scripts/gen-assets.ts"),
    )
    before = registry_path(settings_for(seeded_home)).read_bytes()
    refused = build_cli(seeded_home, repo)
    assert_blocked(refused, "source_origin_mismatch", seeded_home, before)
    claimed = build_cli(seeded_home, repo, "--source-url", "https://github.com/workos/case")
    assert_blocked(claimed, "dist_missing", seeded_home, before)
    wrong = build_cli(seeded_home, repo, "--source-url", "https://github.com/someone/case")
    assert_blocked(wrong, "source_origin_mismatch", seeded_home, before)


def test_a_step_cannot_aim_the_next_steps_logs_outside_the_build(seeded_home: Path,
                                                                  tmp_path: Path) -> None:
    # `bun install` runs the source's `preinstall`, confined to the build folder. It swaps the
    # logs folder for one of its own and plants the next step's log names there as links to
    # files the sandbox cannot write (the harness would truncate them and write the step's
    # output into them, as itself). It also tries the same beside the build folder.
    victim = tmp_path / "root-only" / "victim.conf"
    victim.parent.mkdir(mode=0o700)
    victim.write_text("the operator's file\n")
    created = tmp_path / "root-only" / "created.conf"

    def mutate(repo: Path) -> None:
        (repo / "scripts" / "plant.ts").write_text(
            'import { mkdirSync, readdirSync, renameSync, symlinkSync } from "node:fs";\n'
            'const attempt = (f: () => void) => { try { f(); } catch (e) { console.log(`${e}`); } };\n'
            'const plant = (logs: string) => {\n'
            '  attempt(() => mkdirSync(logs));\n'
            '  attempt(() => readdirSync("../logs-of-step-1").forEach((name) => symlinkSync(\n'
            '    `${process.cwd()}/../logs-of-step-1/${name}`, `${logs}/${name}`)));\n'
            f'  attempt(() => symlinkSync({json.dumps(str(victim))},\n'
            '                            `${logs}/02-bun-run-build-binary.stdout.log`));\n'
            f'  attempt(() => symlinkSync({json.dumps(str(created))},\n'
            '                            `${logs}/02-bun-run-build-binary.stderr.log`));\n'
            '};\n'
            'const here = process.cwd().split("/").slice(-2)[0];\n'
            'attempt(() => renameSync("../logs", "../logs-of-step-1"));\n'
            'attempt(() => renameSync(`../../${here}.logs`, "../logs-of-step-1"));\n'
            'plant("../logs");\n'
            'plant(`../../${here}.logs`);\n'
        )
        set_script(repo, "preinstall", "bun scripts/plant.ts")
        set_script(repo, "build:binary", "echo 'ATTACKER TEXT' && echo 'MORE' >&2 && false")

    repo = make_standin_repo(tmp_path, mutate=mutate)
    result = build_cli(seeded_home, repo)
    assert result.returncode == 2, result.stderr
    assert "blocked: build_failed: `bun run build:binary` exited 1" in result.stderr
    assert victim.read_text() == "the operator's file\n"
    assert not created.exists()


def _linking_build(target: Path) -> Callable[[Path], None]:
    """A source whose build makes its artifact a link to `target` (and builds nothing)."""
    def mutate(repo: Path) -> None:
        (repo / "scripts" / "link.ts").write_text(
            'import { mkdirSync, symlinkSync } from "node:fs";\n'
            'mkdirSync("dist", { recursive: true });\n'
            f'symlinkSync({json.dumps(str(target))}, "dist/ca");\n'
        )
        set_script(repo, "build:binary", "bun scripts/link.ts")
    return mutate


def test_a_built_artifact_that_is_a_link_is_not_read_through(seeded_home: Path,
                                                             tmp_path: Path) -> None:
    # The build's scripts make dist/ca a link: to a program they could not read themselves
    # (the harness would copy it, as itself, and admit it as built from the pin), or, for
    # `provider verify`, to the very store copy it compares the rebuild with.
    hidden = write_script_binary(tmp_path / "root-only" / "ca", tag="not built here")
    hidden.parent.chmod(0o700)
    repo = make_standin_repo(tmp_path, mutate=_linking_build(hidden))
    before = registry_path(settings_for(seeded_home)).read_bytes()
    assert_blocked(build_cli(seeded_home, repo), "dist_missing", seeded_home, before)

    prebuilt = write_script_binary(tmp_path / "prebuilt" / "ca", tag="asserted")
    sha = hashlib.sha256(prebuilt.read_bytes()).hexdigest()
    store = seeded_home / "providers" / "case" / sha / "ca"
    repo = make_standin_repo(tmp_path, mutate=_linking_build(store))
    policy = str(write_policy_accepting(tmp_path / "policy.toml", head_commit(repo)))
    admitted = run_provider_cli(seeded_home, "admit", "--binary", str(prebuilt), "--source-url",
                                POLICY_SOURCE_URL, "--commit", head_commit(repo),
                                "--policy", policy)
    assert admitted.returncode == 0, admitted.stderr
    verified = run_provider_cli(seeded_home, "verify", sha, "--source", str(repo),
                                "--policy", policy)
    assert verified.returncode == 2, verified.stdout
    assert "blocked: dist_missing: " in verified.stderr
    assert "digests match" not in verified.stdout


def test_a_manifest_that_is_a_link_loop_is_refused_not_a_crash(seeded_home: Path,
                                                               tmp_path: Path) -> None:
    # The source commits package.json as a link to itself: resolving it loops.
    def mutate(repo: Path) -> None:
        (repo / "package.json").unlink()
        (repo / "package.json").symlink_to("package.json")

    blocked_build(tmp_path, seeded_home, "source_identity_mismatch", mutate=mutate)
