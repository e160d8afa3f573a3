"""Isolation tiers, the canary, the guards, the configuration and signed evidence."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HARNESS_ROOT, REPO_ROOT, CaseFactory
from cto_harness.core.run import execute_run
from cto_harness.core.workspace import LINK_OUT_NOTE
from cto_harness.errors import UsageError
from cto_harness.evidence.signing import PRIVATE_KEY, PUBLIC_KEY, load_or_create_key, sign_bundle
from cto_harness.evidence.verify import BundleInvalid, verify_bundle
from cto_harness.sandbox import isolation
from cto_harness.sandbox.probe import Probe
from cto_harness.sandbox.process import SANDBOX_TASK_LIMIT
from cto_harness.settings import Settings
from world_helpers import world_dir

RUN_CASE = str(REPO_ROOT / "harness" / "evals" / "run-case.sh")
REQUIRE_BWRAP = os.environ.get("CTO_HARNESS_REQUIRE_BWRAP") == "1"


def _scripted_case(case_factory: CaseFactory, case_id: str, script: str) -> Path:
    """A case whose fake provider applies the solution, then runs `script` in the workspace."""
    return case_factory(case_id, toml_edit=lambda t: t.replace(
        'overlay = "fake/solution"', 'overlay = "fake/solution"\nscript = "script.py"'),
        files={"script.py": script})


def _tiers() -> list[str]:
    found = isolation.probe()
    tiers = []
    if found.bwrap_ok:
        tiers.append("bwrap")
    elif REQUIRE_BWRAP:
        pytest.fail(f"CTO_HARNESS_REQUIRE_BWRAP=1 but {found.bwrap_error}")
    if found.landlock_abi:
        tiers.append("landlock")
    return [*tiers, "none"]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def test_the_background_probe_is_the_one_probe_waits_for() -> None:
    """`run` starts the probe on a thread; `probe()` waits for that thread's result instead of
    probing a second time beside it (the cache then counts one computation, not two)."""
    done = _python(
        "from cto_harness.sandbox import probe as p\n"
        "p.start_probe(); p.start_probe()\n"
        "first = p.probe(); second = p.probe()\n"
        "assert first is second, 'two probes'\n"
        "assert not p._started.is_alive()\n"
        "print(p._probe_once.cache_info().misses, first.bwrap_ok == p._probe_once().bwrap_ok)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "True"]


def test_a_background_probe_that_fails_fails_in_the_caller_without_a_thread_traceback() -> None:
    done = _python(
        "import shutil\n"
        "def broken(name): raise RuntimeError('which is broken')\n"
        "shutil.which = broken\n"
        "from cto_harness.sandbox import probe as p\n"
        "p.start_probe()\n"
        "try:\n"
        "    p.probe()\n"
        "except RuntimeError as exc:\n"
        "    print('caller saw:', exc)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "caller saw: which is broken"
    assert "Exception in thread" not in done.stderr and "Traceback" not in done.stderr


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cto_harness", *args], capture_output=True,
                          text=True, env=env or dict(os.environ), cwd=REPO_ROOT)


@pytest.mark.parametrize("tier", _tiers())
def test_the_fake_lane_passes_and_verifies_on_every_tier(
    tier: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CTO_HARNESS_ISOLATION", tier)
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    report = result.report
    assert report.verdict == "pass", report.blockers
    info = report.isolation
    assert info.tier == tier
    assert info.canary["ran"] and not info.canary["breach"]
    assert report.no_target_inspection.canary == info.canary
    observed = info.canary["observed"]
    # On every tier: never root, and nothing of the harness or the host network within reach.
    assert observed.pop("uid") == info.uid != 0 and info.user_source == "allocated"
    assert {k: v for k, v in observed.items() if k not in ("read_hidden_target",
                                                          "write_outside_workspace")} == {
        "connect_out": "denied", "connect_host_ip": observed["connect_host_ip"],
        "read_root_only": "denied", "read_shadow": "denied", "read_signing_key": "denied",
        "read_harness_environ": "denied", "signal_harness": "denied", "keyring": "denied"}
    assert observed["connect_host_ip"] in ("denied", "untested")
    assert info.network == "none" and "net" in info.namespaces and "pid" in info.namespaces
    assert info.containment["provider"]["tree_clean"] and info.containment["final"]["tree_clean"]
    if tier != "none":
        assert observed["read_hidden_target"] == observed["write_outside_workspace"] == "denied"
        home = Settings.from_env().home
        assert str(home) in info.hidden_paths
        assert str(Path.home()) in info.hidden_paths
    else:
        assert info.reason
    # The harness reads only what it owns again: the workspace was taken back.
    assert {p.stat().st_uid for p in result.run_dir.joinpath("workspace").rglob("*")} == {0}
    verify_bundle(result.run_dir)


def test_run_case_script_passes_under_bwrap_with_its_report() -> None:
    if not isolation.probe().bwrap_ok:
        if REQUIRE_BWRAP:
            pytest.fail("bwrap required")
        pytest.skip("bwrap unavailable")
    proc = subprocess.run([RUN_CASE, "r1-string-slugify", "--json"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    iso = report["isolation"]
    assert (iso["tier"], iso["network"], iso["tool"]) == ("bwrap", "none", iso["probe"]["bwrap"])
    assert iso["uid"] not in (None, 0)
    assert len(iso["digest"]) == 64 and iso["version"].startswith("bubblewrap")
    assert {"mount", "pid", "net"} <= set(iso["namespaces"])
    assert (Path(report["run_dir"]) / "evidence.dsse.json").is_file()


def test_an_unavailable_forced_tier_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "probe", lambda: Probe(None, "bwrap is not installed", None,
                                                          None, 0))
    monkeypatch.setenv("CTO_HARNESS_ISOLATION", "bwrap")
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    assert result.report.verdict == "blocked"
    assert [b.code for b in result.report.blockers] == ["isolation_unavailable"]
    assert not result.report.case_process_started
    verify_bundle(result.run_dir)


def test_auto_falls_back_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    found = isolation.probe()
    monkeypatch.setattr(isolation, "probe", lambda: Probe(None, "bwrap is not installed", None,
                                                          None, 0, found.setpriv_path,
                                                          found.namespaces_error))
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    assert result.report.verdict == "pass"
    assert result.report.isolation.tier == "none"
    assert "bwrap is not installed" in result.report.isolation.reason


def test_an_invalid_isolation_setting_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        Settings.from_env({"CTO_HARNESS_ISOLATION": "chroot", "HOME": "/nonexistent"})


@pytest.mark.parametrize("tier", [t for t in _tiers() if t != "none"])
def test_a_canary_that_gets_through_blocks_isolation_breach(
    tier: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sandbox tool that silently confines nothing (claims the tier, wraps with no effect)
    # must be caught by the canary before the provider starts.
    monkeypatch.setattr(isolation.Confinement, "prefix", lambda self: [])
    monkeypatch.setenv("CTO_HARNESS_ISOLATION", tier)
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    assert result.report.verdict == "blocked", result.report.isolation.canary
    assert [b.code for b in result.report.blockers] == ["isolation_breach"]
    assert not result.report.case_process_started
    assert result.report.isolation.canary["breach"] is True


def test_configured_targets_are_hidden_and_scanned(
    tmp_path: Path, case_factory: CaseFactory, harness_home: Path
) -> None:
    target = tmp_path / "product-repo"
    target.mkdir()
    (target / "main.py").write_text("SECRET = 1\n")
    proc = _cli("config", "add-target", str(target))
    assert proc.returncode == 0, proc.stderr
    assert str(target) in (harness_home / "config.toml").read_text()
    shown = json.loads(_cli("config", "show").stdout)
    assert shown["target_repositories"] == [str(target)]
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    assert result.report.verdict == "pass"
    if result.report.isolation.tier != "none":
        assert str(target) in result.report.isolation.hidden_paths
        assert str(target) in result.report.no_target_inspection.hidden_paths
    # A task that names the target repository never reaches a provider.
    root = case_factory("leaky", toml_edit=lambda t: t.replace(
        'Change only `slugkit/text.py`.', f"See {target.name} in {target}."))
    blocked = execute_run("leaky", harness_root=root)
    assert [b.code for b in blocked.report.blockers] == ["task_contract_invalid"]


@pytest.mark.parametrize("tier", ["landlock", "none"])
def test_a_write_outside_during_verification_blocks_outside_write_detected(
    tier: str, case_factory: CaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verification runs code the provider may have changed (the tests import its source).
    A write it makes outside the workspace, here into a world-writable folder of a target
    repository, is prevented on the protected tiers and blocks the run on `none`, where only the
    outside-write guard stands between: the guard's window covers the verification too."""
    if tier == "landlock" and not isolation.probe().landlock_abi:
        pytest.skip("Landlock is not available on this kernel")
    # Traversable by the sandbox uid (pytest's folders are root's alone), as a real checkout is.
    world = world_dir("cto-verify-outside-")
    try:
        world.chmod(0o755)
        target = world / "product-repo"
        (target / "shared").mkdir(parents=True)
        (target / "shared").chmod(0o777)
        planted = target / "shared" / "planted.txt"
        root = case_factory("writes-outside", files={"repo/tests/test_outside.py": (
            "import unittest\n\n\nclass Outside(unittest.TestCase):\n"
            "    def test_writes_outside(self):\n"
            "        try:\n"
            f"            with open({str(planted)!r}, 'w') as handle:\n"
            "                handle.write('written during verification')\n"
            "        except OSError:\n"
            "            pass\n")})
        monkeypatch.setenv("CTO_HARNESS_TARGET_REPOSITORIES", str(target))
        monkeypatch.setenv("CTO_HARNESS_ISOLATION", tier)
        result = execute_run("writes-outside", harness_root=root)
        report = result.report
        if planted.exists():
            assert [b.code for b in report.blockers] == ["outside_write_detected"], report.verdict
            assert str(planted) in report.blockers[0].message
            assert "verification" in report.blockers[0].message
            assert report.verdict == "blocked"
        else:
            assert report.verdict == "pass", [b.message for b in report.blockers]
        if tier == "none":  # the sandbox uid can write a world-writable folder on none
            assert planted.exists()
        verify_bundle(result.run_dir, result.public_key)
    finally:
        shutil.rmtree(world, ignore_errors=True)


def test_a_relative_target_is_a_usage_error(harness_home: Path) -> None:
    with pytest.raises(UsageError):
        Settings.from_env({"CTO_HARNESS_HOME": str(harness_home),
                           "CTO_HARNESS_TARGET_REPOSITORIES": "relative/path"})


# --- signed evidence -------------------------------------------------------------------------


def test_the_key_is_created_once_private_and_the_bundle_is_signed(harness_home: Path) -> None:
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    keys = harness_home / "keys"
    assert stat.S_IMODE((keys / PRIVATE_KEY).stat().st_mode) == 0o600
    assert (keys / PUBLIC_KEY).is_file()
    envelope = json.loads((result.run_dir / "evidence.dsse.json").read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    import base64
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert {s["name"] for s in statement["subject"]} == {"artifacts.sha256", "freshness.json"}
    first_key = (keys / PRIVATE_KEY).read_bytes()
    execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    assert (keys / PRIVATE_KEY).read_bytes() == first_key


@pytest.mark.parametrize("target", ["report.md", "freshness.json", "evidence.dsse.json"])
def test_one_changed_byte_anywhere_fails_verify(target: str) -> None:
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    path = result.run_dir / target
    data = bytearray(path.read_bytes())
    index = data.index(b"{") + 5 if target != "report.md" else 3
    data[index] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleInvalid):
        verify_bundle(result.run_dir)


def test_a_bundle_resigned_with_another_key_fails_but_verifies_with_that_key(
    tmp_path: Path,
) -> None:
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    verify_bundle(result.run_dir)
    other = tmp_path / "other-keys"
    sign_bundle(result.run_dir, load_or_create_key(other), {"forged": True})
    with pytest.raises(BundleInvalid, match="no valid signature"):
        verify_bundle(result.run_dir)
    assert _cli("verify", str(result.run_dir)).returncode == 1
    proc = _cli("verify", str(result.run_dir), "--public-key", str(other / PUBLIC_KEY))
    assert proc.returncode == 0, proc.stderr


def test_another_machine_verifies_with_the_public_key_only(tmp_path: Path) -> None:
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    copy = tmp_path / "received"
    shutil.copytree(result.run_dir, copy, ignore=shutil.ignore_patterns("workspace"))
    public = tmp_path / "lead.pub"
    shutil.copy(Settings.from_env().keys_dir / PUBLIC_KEY, public)
    env = {**os.environ, "CTO_HARNESS_HOME": str(tmp_path / "empty-home")}
    assert _cli("verify", str(copy), env=env).returncode == 1  # no local key there
    proc = _cli("verify", str(copy), "--public-key", str(public), env=env)
    assert proc.returncode == 0, proc.stderr


def test_an_unsigned_bundle_fails_verify() -> None:
    result = execute_run("r1-string-slugify", harness_root=HARNESS_ROOT)
    (result.run_dir / "evidence.dsse.json").unlink()
    with pytest.raises(BundleInvalid, match="not signed"):
        verify_bundle(result.run_dir)


@pytest.mark.parametrize("tier", _tiers())
def test_an_allowed_file_made_a_link_out_of_the_workspace_is_never_tested_through(
    tier: str, case_factory: CaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The allowed file becomes an absolute link to code the provider left outside (a
    world-writable folder no guard watches): patch.diff holds only the link's target, so the
    code the tests would run is in no bundle. The link is a disallowed change on every tier and
    is left out of the verification's copy (on `none` nothing else keeps the tests from
    following it, and the run passed)."""
    if tier == "landlock" and not isolation.probe().landlock_abi:
        pytest.skip("Landlock is not available on this kernel")
    world = world_dir("cto-link-out-")
    try:
        world.chmod(0o755)  # traversable by the sandbox uid (pytest's folders are root's)
        drop = world / "drop"
        drop.mkdir()
        drop.chmod(0o777)
        hidden = drop / "impl.py"
        script = ("import os, shutil\n"
                  f"hidden = {str(hidden)!r}\n"
                  "try:  # the solved file, kept where no bundle looks\n"
                  "    shutil.copyfile('slugkit/text.py', hidden)\n"
                  "    os.chmod(hidden, 0o644)\n"
                  "except OSError:\n"
                  "    pass\n"
                  "os.unlink('slugkit/text.py')\n"
                  "os.symlink(hidden, 'slugkit/text.py')\n")
        root = case_factory("link-out", toml_edit=lambda t: t.replace(
            'overlay = "fake/solution"', 'overlay = "fake/solution"\nscript = "link_out.py"'),
            files={"link_out.py": script})
        monkeypatch.setenv("CTO_HARNESS_ISOLATION", tier)
        result = execute_run("link-out", harness_root=root)
        report = result.report
        (change,) = [c for c in report.changed_files if c.path == "slugkit/text.py"]
        assert change.kind == "symlink" and not change.allowed, change
        assert LINK_OUT_NOTE in change.notes
        assert report.verdict == "fail"
        assert report.verification.status == "failed"
        if tier == "none":  # the code was there to be run: only the copy's rule kept it out
            assert hidden.is_file()
        verify_bundle(result.run_dir, result.public_key)
    finally:
        shutil.rmtree(world, ignore_errors=True)


KEYRING_PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
add_key, keyctl = {"x86_64": (248, 250), "aarch64": (217, 219)}[os.uname().machine]
said = []
# Into the uid's own keyring (it outlives the run), and a look at the session keyring the
# harness's process held (KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING).
for name, call in (("add_key", lambda: libc.syscall(add_key, b"user", b"cto-k", b"v", 1, -4)),
                   ("keyctl", lambda: libc.syscall(keyctl, 0, -3, 0))):
    result = call()
    said.append(name + "=" + ("ok" if result >= 0 else os.strerror(ctypes.get_errno())))
with open("slugkit/text.py", "a") as handle:
    handle.write("# keyring: " + " ".join(said) + "\\n")
"""


@pytest.mark.parametrize("tier", _tiers())
def test_no_sandboxed_process_reaches_the_kernel_keyring(
    tier: str, case_factory: CaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys belong to a uid, not to any namespace: a key the provider added outlived the uid
    sweep (a later run on that uid read it), its permissions opened it to other sandbox uids,
    and the session keyring the harness held stayed reachable. The launcher's seccomp filter
    answers every keyring call with ENOSYS, and the canary proves it before each start."""
    root = _scripted_case(case_factory, "keyring", KEYRING_PROBE)
    monkeypatch.setenv("CTO_HARNESS_ISOLATION", tier)
    result = execute_run("keyring", harness_root=root)
    text = (result.run_dir / "workspace" / "slugkit" / "text.py").read_text()
    nosys = os.strerror(38)
    assert f"# keyring: add_key={nosys} keyctl={nosys}\n" in text, result.report.blockers
    assert result.report.isolation.canary["observed"]["keyring"] == "denied"


WORLD_WRITABLE = """
import os
os.chmod(".", 0o777)
os.chmod("slugkit", 0o777)
os.chmod("slugkit/text.py", 0o666)
"""


@pytest.mark.parametrize("tier", _tiers())
def test_the_workspace_taken_back_is_writable_by_nobody_else(
    tier: str, case_factory: CaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider made its workspace world-writable before it exited; taken back, it was a
    root-owned tree beside the bundle that any local user could write into."""
    root = _scripted_case(case_factory, "world-writable", WORLD_WRITABLE)
    monkeypatch.setenv("CTO_HARNESS_ISOLATION", tier)
    result = execute_run("world-writable", harness_root=root)
    workspace = result.run_dir / "workspace"
    for path in (workspace, workspace / "slugkit", workspace / "slugkit" / "text.py"):
        assert path.stat().st_uid == os.geteuid() and not path.stat().st_mode & 0o022, path
    assert result.report.verdict == "pass", result.report.blockers


def test_the_take_back_leaves_a_hard_linked_file_of_someone_else_alone(
    case_factory: CaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On tier none the provider hard-linked another user's world-writable file (elsewhere on
    the runs folder's file system) into its workspace; the take-back then made that file
    root's and stripped its write bits: the harness itself changed a file outside the
    workspace, and nothing blocked the run. Only what the sandbox uid owns is taken back."""
    world = world_dir("take-back-")
    try:
        theirs = world / "shared.txt"
        theirs.write_text("someone else's\n")
        os.chown(theirs, 65534, 65534)
        theirs.chmod(0o666)
        root = _scripted_case(case_factory, "take-back-link",
                              f"import os\nos.link({str(theirs)!r}, 'slugkit/linked.txt')\n")
        monkeypatch.setenv("CTO_HARNESS_ISOLATION", "none")
        monkeypatch.setenv("CTO_HARNESS_RUNS_DIR", str(world / "runs"))  # the same mount
        result = execute_run("take-back-link", harness_root=root)
        assert (result.run_dir / "workspace" / "slugkit" / "linked.txt").exists()
        st = theirs.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o666)
        assert result.report.verdict == "fail"  # the hard link is a disallowed change
    finally:
        shutil.rmtree(world)


SCRATCH_PROBE = """
import os
wrote = []
for folder in ("/tmp", "/var/tmp", "/dev/shm"):
    try:
        with open(os.path.join(folder, "cto-scratch-probe"), "w") as handle:
            handle.write("scratch")
        wrote.append(folder)
    except OSError:
        pass
with open("slugkit/text.py", "a") as handle:
    handle.write("# scratch written: " + " ".join(wrote) + "\\n")
"""


@pytest.mark.parametrize("tier", _tiers())
def test_the_provider_and_the_tests_run_under_the_task_limit_on_every_tier(
    tier: str, case_factory: CaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork bomb stops at RLIMIT_NPROC (counted per sandbox uid): the provider and the
    harness's own test run, which imports the provider's code, both run under it."""
    script = ("import resource\n"
              "with open('slugkit/text.py', 'a') as handle:\n"
              "    handle.write('\\nimport resource\\n'\n"
              "                 'assert resource.getrlimit(resource.RLIMIT_NPROC)[0] == %d\\n'\n"
              "                 '# provider limit: %d\\n' % (SANDBOX_TASK_LIMIT,\n"
              "                 resource.getrlimit(resource.RLIMIT_NPROC)[0]))\n"
              ).replace("SANDBOX_TASK_LIMIT", str(SANDBOX_TASK_LIMIT))
    root = _scripted_case(case_factory, "task-limit", script)
    monkeypatch.setenv("CTO_HARNESS_ISOLATION", tier)
    result = execute_run("task-limit", harness_root=root)
    text = (result.run_dir / "workspace" / "slugkit" / "text.py").read_text()
    assert f"# provider limit: {SANDBOX_TASK_LIMIT}\n" in text
    # The verification imported the module: its assertion held there too.
    assert result.report.verdict == "pass", result.report.verification.reason


def test_empty_names_are_charged_as_the_disk_holds_them(
    case_factory: CaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each name costs the harness a create and a removal or two, whatever its size: 200,000
    empty files (under the old 256 bytes a name) cost 204 s of harness time after the run. A
    name is now charged one 4 KiB block: 400 empty files are over a 1 MiB workspace, and the run
    stops at the walk, before any copy."""
    script = ("import os\nos.makedirs('many')\n"
              "for i in range(400):\n    open(f'many/{i}', 'w').close()\n")
    root = _scripted_case(case_factory, "many-names", script)
    monkeypatch.setenv("CTO_HARNESS_WORKSPACE_LIMIT_MB", "1")
    result = execute_run("many-names", harness_root=root)
    assert [b.code for b in result.report.blockers] == ["workspace_size_exceeded"]
    assert result.report.verification.status == "not_run"
    verify_bundle(result.run_dir)


@pytest.mark.parametrize("tier", _tiers())
def test_the_provider_has_a_scratch_tmp_of_its_own_on_every_tier(
    tier: str, case_factory: CaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Programs write /tmp (an agent's `> /tmp/test.log`): the sandbox uid may, in a private
    tmpfs that is gone with the run; nothing reaches the host's /tmp or /var/tmp, and nothing
    another local user left there (code an admitted program might load) reaches the sandbox."""
    root = _scripted_case(case_factory, "scratch-tmp", SCRATCH_PROBE)
    monkeypatch.setenv("CTO_HARNESS_ISOLATION", tier)
    host_probes = [Path(d) / "cto-scratch-probe" for d in ("/tmp", "/var/tmp")]
    existed = [p.exists() for p in host_probes]
    result = execute_run("scratch-tmp", harness_root=root)
    text = (result.run_dir / "workspace" / "slugkit" / "text.py").read_text()
    assert "# scratch written: /tmp /var/tmp /dev/shm\n" in text, result.report.blockers
    assert [p.exists() for p in host_probes] == existed


SCRATCH_FILL = """
import json, os
wrote = {}
for folder in ("/tmp", "/var/tmp", "/dev/shm"):
    total = 0
    try:
        for i in range(8):  # 4 MiB in files of 512 KiB, each under RLIMIT_FSIZE
            with open(os.path.join(folder, "fill-%d" % i), "wb") as handle:
                handle.write(b"x" * (512 << 10))
            total += 512 << 10
    except OSError:
        pass
    wrote[folder] = total >> 10
with open("slugkit/text.py", "a") as handle:
    handle.write("# scratch KiB: " + json.dumps(wrote) + "\\n")
"""


@pytest.mark.parametrize("tier", _tiers())
def test_the_scratch_tmpfs_holds_no_more_than_the_workspace_limit(
    tier: str, case_factory: CaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/tmp, /var/tmp and /dev/shm are tmpfs the harness mounts: RAM, charged to no limit and
    to no process (the OOM killer cannot free them by killing the provider). Unbounded, each
    took half the machine's memory in files under RLIMIT_FSIZE; now each stops at the
    workspace limit."""
    root = _scripted_case(case_factory, "scratch-fill", SCRATCH_FILL)
    monkeypatch.setenv("CTO_HARNESS_ISOLATION", tier)
    monkeypatch.setenv("CTO_HARNESS_WORKSPACE_LIMIT_MB", "2")
    result = execute_run("scratch-fill", harness_root=root)
    text = (result.run_dir / "workspace" / "slugkit" / "text.py").read_text()
    line = next(x for x in text.splitlines() if x.startswith("# scratch KiB: "))
    wrote = json.loads(line.removeprefix("# scratch KiB: "))
    assert set(wrote) == {"/tmp", "/var/tmp", "/dev/shm"}, line
    assert all(0 < kib <= 2048 for kib in wrote.values()), line


DISK_FILL = """
import os, time
for i in range(200):  # 200 MiB in files of 1 MiB, each under RLIMIT_FSIZE
    with open("fill-%03d" % i, "wb") as handle:
        handle.write(os.urandom(1 << 20))
        handle.flush()
        os.fsync(handle.fileno())
    time.sleep(0.04)
"""


def test_a_provider_writing_file_after_file_is_stopped_at_the_workspace_limit(
    case_factory: CaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RLIMIT_FSIZE bounds one file, not how many: the total was charged only after the run,
    so a provider filled the host's disk with files under the limit while it ran, and the
    blocked run left them there. The harness now stops it once its folders pass the limit."""
    root = _scripted_case(case_factory, "disk-fill", DISK_FILL)
    monkeypatch.setenv("CTO_HARNESS_WORKSPACE_LIMIT_MB", "2")
    result = execute_run("disk-fill", harness_root=root)
    assert [b.code for b in result.report.blockers] == ["workspace_size_exceeded"]
    assert "the provider was stopped" in result.report.blockers[0].message
    left = list((result.run_dir / "workspace").glob("fill-*"))
    assert len(left) < 50, len(left)  # 1 MiB each, stopped within a second or so
    verify_bundle(result.run_dir)


VERIFICATION_FILL = """
code = '''
import os as _os, sys as _sys, time as _time
try:
    with open("big.bin", "wb") as _h:
        for _ in range(6):
            _h.write(b"x" * (1 << 20))
except OSError:
    pass
print("# big.bin: %d" % _os.path.getsize("big.bin"), file=_sys.stderr, flush=True)
for _i in range(200):
    with open("fill-%03d" % _i, "wb") as _h:
        _h.write(_os.urandom(1 << 20))
        _h.flush()
        _os.fsync(_h.fileno())
    _time.sleep(0.04)
'''
with open("slugkit/text.py", "a") as handle:
    handle.write(code)
"""


def test_the_tests_running_the_providers_code_are_held_to_the_disk_limit_too(
    case_factory: CaseFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verification imports the provider's code: it ran with no RLIMIT_FSIZE and no
    watch on its total, so the solution filled the disk from inside the harness's own test
    run. One file now stops at the limit and the run is stopped past twice the limit."""
    root = _scripted_case(case_factory, "verification-fill", VERIFICATION_FILL)
    monkeypatch.setenv("CTO_HARNESS_WORKSPACE_LIMIT_MB", "2")
    result = execute_run("verification-fill", harness_root=root)
    assert result.report.verdict == "fail", result.report.blockers
    assert "verification_stopped" in result.report.verification.failures
    log = (result.run_dir / "test.log").read_text()
    sizes = [int(x.split()[-1]) for x in log.splitlines() if x.startswith("# big.bin: ")]
    assert sizes and max(sizes) <= 2 << 20, sizes
    verify_bundle(result.run_dir)


def test_the_workspace_left_beside_the_bundle_runs_nothing_the_provider_configured(
    case_factory: CaseFactory, tmp_path: Path
) -> None:
    """The README sends the operator to `workspace/`; the provider wrote its `.git`. A plain
    `git status` there ran the provider's fsmonitor command as the operator (root)."""
    marker = tmp_path / "ran.txt"
    script = (
        "import os, subprocess\n"
        f"subprocess.run(['git', 'config', 'core.fsmonitor', \"sh -c 'id >> {marker}'; false\"])\n"
        "os.makedirs('.git/hooks', exist_ok=True)\n"
        f"open('.git/hooks/pre-commit', 'w').write('#!/bin/sh\\nid >> {marker}\\n')\n"
        "os.chmod('.git/hooks/pre-commit', 0o755)\n")
    root = _scripted_case(case_factory, "git-trap", script)
    result = execute_run("git-trap", harness_root=root)
    assert result.report.verdict == "pass", result.report.blockers
    workspace = result.run_dir / "workspace"
    assert "fsmonitor" in (workspace / ".git" / "config.provider-written").read_text()
    status = subprocess.run(["git", "-C", str(workspace), "status", "--porcelain"],
                            capture_output=True, text=True)
    assert status.returncode == 0 and " M slugkit/text.py" in status.stdout
    subprocess.run(["git", "-C", str(workspace), "-c", "user.name=o", "-c", "user.email=o@o",
                    "commit", "-qam", "operator"], check=True)
    assert not marker.exists(), marker.read_text()
    verify_bundle(result.run_dir)


def test_no_repository_of_the_providers_own_is_left_deeper_in_the_workspace(
    case_factory: CaseFactory, tmp_path: Path
) -> None:
    """A nested `.git` (a folder with a config, a `gitdir:` file, a link to one) made `git
    status` in that folder of the workspace run the provider's fsmonitor command as the
    operator. Each is set aside whole; git there finds the workspace's own repository."""
    marker = tmp_path / "ran.txt"
    script = (
        "import os, subprocess\n"
        "for folder in ('deep/er', 'pointer', 'linked'):\n"
        "    os.makedirs(folder, exist_ok=True)\n"
        "subprocess.run(['git', 'init', '-q', 'deep/er'], check=True)\n"
        "subprocess.run(['git', '-C', 'deep/er', 'config', 'core.fsmonitor',\n"
        f"                \"sh -c 'id >> {marker}'; false\"], check=True)\n"
        "open('pointer/.git', 'w').write('gitdir: ../deep/er/.git\\n')\n"
        "os.symlink('../deep/er/.git', 'linked/.git')\n")
    root = _scripted_case(case_factory, "nested-git", script)
    result = execute_run("nested-git", harness_root=root)
    workspace = result.run_dir / "workspace"
    left = [p.relative_to(workspace).as_posix() for p in workspace.rglob(".git*")
            if p.parent != workspace]
    assert sorted(left) == ["deep/er/.git.provider-written", "linked/.git.provider-written",
                            "pointer/.git.provider-written"]
    for folder in ("deep/er", "pointer", "linked"):
        top = subprocess.run(["git", "-C", str(workspace / folder), "rev-parse",
                              "--show-toplevel"], capture_output=True, text=True, check=True)
        assert Path(top.stdout.strip()) == workspace
        subprocess.run(["git", "-C", str(workspace / folder), "status", "--porcelain"],
                       capture_output=True, check=True)
    assert not marker.exists(), marker.read_text()
    verify_bundle(result.run_dir)


def test_a_nested_git_whose_set_aside_name_is_taken_is_removed_and_the_others_still_go(
    tmp_path: Path
) -> None:
    """A folder planted at `.git.provider-written` keeps a nested `.git` from being renamed:
    that one is removed instead (reached from the workspace by descriptors), and the next one
    is still set aside."""
    from cto_harness.core.gitdir import disarm_git_dir

    workspace = tmp_path / "ws"
    (workspace / "a" / ".git").mkdir(parents=True)
    (workspace / "a" / ".git" / "config").write_text("[core]\n\tfsmonitor = evil\n")
    (workspace / "a" / ".git.provider-written" / "planted").mkdir(parents=True)
    (workspace / "b" / ".git").mkdir(parents=True)
    done = disarm_git_dir(workspace)
    assert {"a/.git", "b/.git"} <= set(done)
    assert not (workspace / "a" / ".git").exists()
    assert (workspace / "a" / ".git.provider-written" / "planted").is_dir()
    assert (workspace / "b" / ".git.provider-written").is_dir()
