"""Fault injection: every fault ends in a sealed bundle or one clear line, never a traceback.

Real faults, not mocks: a tmpfs that is full or fills up during the run and read-only bind
mounts (each in a private mount namespace, `unshare -m`, so nothing leaks to the host), a runs
path that is a file, a corrupt or empty signing key, a provider "binary" the kernel cannot
execute, a reader that closed stdout, a Ctrl-C while the program is still loading and one once
the run folder exists (each sent on an observed event, never after a sleep), and bundles whose
manifest is not UTF-8 or whose events line is a JSON array.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import HARNESS_ROOT, REPO_ROOT, CaseFactory
from cto_harness.evidence.signing import load_or_create_key, sign_bundle
from observer_helpers import CollectEvents

CASE = "r1-string-slugify"
CLI = [sys.executable, "-m", "cto_harness"]


def _env(**extra: str) -> dict[str, str]:
    """The test's environment as it is now (its own CTO_HARNESS_HOME), plus `extra`."""
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), **extra}


def _cli(*args: str, env: dict[str, str] | None = None, **kw: object
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=_env(**(env or {})), text=True,
                          capture_output=True, timeout=300, check=False, **kw)  # type: ignore[call-overload]


def _one_line(stderr: str) -> str:
    """The command's stderr must be exactly one line (progress lines of a run aside)."""
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines()
             if ln.strip() and not ln.startswith(("cto-harness: running ", "import time:"))]
    assert len(lines) == 1, stderr
    return lines[0]


def _in_mount_namespace(tmp_path: Path, script: str, runs: Path) -> Path:
    """`script` (sh) in a private mount namespace (its mounts vanish with it), with `runs` as
    the runs folder and $OUT a new folder for what it records; returns $OUT once it succeeded."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("fault mounts need root and unshare (util-linux)")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-euc", script],
                          env=_env(OUT=str(out), CTO_HARNESS_RUNS_DIR=str(runs)), text=True,
                          capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return out


def _cli_line(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in [*CLI, *args])


# --- folders and keys: refused before anything is written --------------------------------------


def test_a_runs_path_that_is_a_file_is_one_usage_line(tmp_path: Path) -> None:
    runs = tmp_path / "runs-file"
    runs.write_text("not a folder\n")
    for where in (runs, runs / "below"):
        proc = _cli("run", CASE, env={"CTO_HARNESS_RUNS_DIR": str(where)})
        assert proc.returncode == 64, proc.stderr
        assert "not a folder" in _one_line(proc.stderr) or "not writable" in proc.stderr
    assert runs.read_text() == "not a folder\n"


def test_a_read_only_runs_folder_or_home_is_one_usage_line(tmp_path: Path,
                                                           harness_home: Path) -> None:
    runs = tmp_path / "ro-runs"
    runs.mkdir()
    home = harness_home
    home.mkdir(parents=True, exist_ok=True)
    script = f"""
mount --bind {runs} {runs}; mount -o remount,bind,ro {runs}
{_cli_line("run", CASE)} 2>"$OUT/runs.err" && echo 0 >"$OUT/runs.rc" || echo $? >"$OUT/runs.rc"
umount {runs}
mount --bind {home} {home}; mount -o remount,bind,ro {home}
CTO_HARNESS_RUNS_DIR={runs} {_cli_line("run", CASE)} 2>"$OUT/home.err" \
  && echo 0 >"$OUT/home.rc" || echo $? >"$OUT/home.rc"
"""
    out = _in_mount_namespace(tmp_path, script, runs)
    assert (out / "runs.rc").read_text().strip() == "64"
    assert "Read-only file system" in _one_line((out / "runs.err").read_text())
    # A read-only home: no signing key can be created there, so no run starts.
    assert (out / "home.rc").read_text().strip() == "64"
    assert "signing key" in _one_line((out / "home.err").read_text())
    assert list(runs.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"-----BEGIN PRIVATE KEY-----\ngarbage\n"],
                         ids=["empty", "corrupt"])
def test_an_unusable_signing_key_is_one_usage_line_and_no_run(
    content: bytes, harness_home: Path, runs_dir: Path
) -> None:
    keys = harness_home / "keys"
    keys.mkdir(parents=True)
    (keys / "evidence-ed25519.pem").write_bytes(content)
    proc = _cli("run", CASE)
    assert proc.returncode == 64, proc.stderr
    assert "signing key" in _one_line(proc.stderr)
    assert not runs_dir.exists() or list(runs_dir.iterdir()) == []
    assert (keys / "evidence-ed25519.pem").read_bytes() == content  # never replaced silently


class _KeyBreaker(CollectEvents):
    """A run observer that empties the signing key file as verification starts."""

    def __init__(self, key_file: Path) -> None:
        super().__init__()
        self.key_file = key_file

    def step(self, name: str) -> None:
        if name == "verification":
            self.key_file.write_bytes(b"")


def test_a_key_file_that_breaks_during_the_run_still_leaves_a_signed_bundle(
    harness_home: Path,
) -> None:
    from cto_harness.core.run import execute_run

    key_file = harness_home / "keys" / "evidence-ed25519.pem"
    public = harness_home / "keys" / "evidence-ed25519.pub"
    result = execute_run(CASE, harness_root=HARNESS_ROOT, observer=_KeyBreaker(key_file))
    assert key_file.read_bytes() == b""  # the key file did break while the run went
    # Noticed too: the harness home is watched until the verification has ended.
    assert [b.code for b in result.report.blockers] == ["outside_write_detected"]
    assert str(key_file) in result.report.blockers[0].message
    assert result.report.verification.status == "passed"
    proc = _cli("verify", str(result.run_dir), "--public-key", str(public))
    assert proc.returncode == 0, proc.stdout + proc.stderr  # signed with the key loaded first


def test_a_full_runs_folder_is_one_line_before_the_run(tmp_path: Path) -> None:
    runs = tmp_path / "full"
    runs.mkdir()
    script = f"""
mount -t tmpfs -o size=1m tmpfs {runs}
{_cli_line("run", CASE)} 2>"$OUT/err" && echo 0 >"$OUT/rc" || echo $? >"$OUT/rc"
ls -A {runs} >"$OUT/left"
"""
    out = _in_mount_namespace(tmp_path, script, runs)
    assert (out / "rc").read_text().strip() == "3"
    assert "no space left" in _one_line((out / "err").read_text())
    assert (out / "left").read_text() == ""


def test_a_disk_that_fills_during_the_run_still_ends_in_a_sealed_bundle(
    case_factory: CaseFactory, tmp_path: Path
) -> None:
    # The provider fills the runs folder's file system to the last byte: the diff, the
    # verification copy and the sealing all meet ENOSPC.
    fill = ("import os\nwith open('filler.bin', 'wb') as f:\n    try:\n        while True:\n"
            "            f.write(os.urandom(1 << 16)); f.flush()\n    except OSError:\n"
            "        pass\n")
    root = case_factory("fills-disk", files={"fake/fill.py": fill}, toml_edit=lambda t: t.replace(
        'overlay = "fake/solution"', 'overlay = "fake/solution"\nscript = "fake/fill.py"'))
    runs = tmp_path / "small"
    runs.mkdir()
    script = f"""
mount -t tmpfs -o size=24m tmpfs {runs}
{_cli_line("run", "fills-disk", "--harness-root", str(root), "--json")} >"$OUT/report" \
  2>"$OUT/err" && echo 0 >"$OUT/rc" || echo $? >"$OUT/rc"
{_cli_line("verify", "--json")} {runs}/*/ >"$OUT/verify" 2>&1 && echo 0 >"$OUT/vrc" \
  || echo $? >"$OUT/vrc"
"""
    out = _in_mount_namespace(tmp_path, script, runs)
    err = (out / "err").read_text()
    assert "Traceback" not in err, err
    assert (out / "rc").read_text().strip() == "3", err
    report = json.loads((out / "report").read_text())
    assert report["verdict"] == "error"
    messages = " ".join(b["message"] for b in report["blockers"])
    assert "No space left" in messages and "sealing the bundle failed" in messages
    assert (out / "vrc").read_text().strip() == "0", (out / "verify").read_text()
    assert json.loads((out / "verify").read_text())["ok"] is True


# --- commands -----------------------------------------------------------------------------


def test_admitting_a_file_that_is_no_program_is_blocked_in_one_line(tmp_path: Path) -> None:
    from cto_harness.providers.policy import load_policy
    from standin_helpers import POLICY_PATH

    fake = tmp_path / "ca"
    fake.write_bytes(b"\x7fELF\x02\x01\x01\x00not really a program")
    fake.chmod(0o755)
    policy = load_policy(POLICY_PATH)
    proc = _cli("provider", "admit", "--binary", str(fake), "--policy", str(POLICY_PATH),
                "--source-url", policy.distribution.url, "--commit", policy.pin)
    assert proc.returncode == 2, proc.stderr
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("cto-harness:")]
    assert "Traceback" not in proc.stderr and len(line) == 1, proc.stderr
    assert "not_executable" in line[0] and "Exec format error" in line[0]


def test_a_reader_that_closed_stdout_gets_one_line(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the command starts: its first write meets EPIPE
    try:
        proc = subprocess.run([*CLI, "config", "show"], env=_env(), stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    finally:
        os.close(write_end)
    assert proc.returncode == 3
    assert "broken pipe" in _one_line(proc.stderr)


SCRIPT = Path(sys.executable).parent / "cto-harness"


@pytest.mark.parametrize("entry", ["python -m cto_harness", "cto-harness"])
def test_ctrl_c_while_the_program_is_still_loading_is_one_line(entry: str) -> None:
    # Python's import-time report prints a line as each import finishes: the first one naming
    # the package means the program's own imports are under way (its first ~100 ms).
    if entry == "cto-harness" and not SCRIPT.exists():
        pytest.skip("the cto-harness console script is not installed next to this interpreter")
    argv = [*CLI] if entry.startswith("python") else [str(SCRIPT)]
    proc = subprocess.Popen([*argv, "run", CASE], env=_env(PYTHONPROFILEIMPORTTIME="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "cto_harness" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    stderr = "".join(seen) + rest
    assert proc.returncode == 3, stderr
    assert _one_line(stderr) == "cto-harness: interrupted"


def test_ctrl_c_once_the_run_folder_exists_leaves_a_sealed_interrupted_bundle(
    runs_dir: Path
) -> None:
    proc = subprocess.Popen([*CLI, "run", CASE], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (runs_dir.is_dir() and any(runs_dir.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "no run folder appeared"
        time.sleep(0.005)  # polling for the event: the run folder's creation
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3 and "Traceback" not in err, err
    (bundle,) = list(runs_dir.iterdir())
    check = _cli("verify", "--json", str(bundle))
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads((bundle / "report.json").read_text())
    assert report["verdict"] == "error"
    assert [b["code"] for b in report["blockers"]] == ["interrupted"]


class _Signal(BaseException):
    """Stands for a signal's exception at one exact point (no real signal can be aimed there)."""


def test_an_interrupt_right_after_an_atomic_writes_file_exists_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cto_harness.fsutil import atomic_write_bytes

    real_open = os.open

    def open_then_interrupt(*args: object, **kwargs: object) -> int:
        real_open(*args, **kwargs)  # type: ignore[arg-type]
        raise _Signal

    folder = tmp_path / "task"
    folder.mkdir()
    before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "open", open_then_interrupt)
    with contextlib.suppress(_Signal):  # raised only if the write goes through os.open
        atomic_write_bytes(folder / "task.json", b"{}")
    monkeypatch.undo()
    assert list(folder.iterdir()) in ([], [folder / "task.json"])  # no temporary file left
    assert len(os.listdir("/proc/self/fd")) == before  # and no descriptor


class _LeftoverWriter(CollectEvents):
    """Leaves what an interrupted write leaves in task/ (a temporary file) as the case loads."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir

    def step(self, name: str) -> None:
        if name == "task.load":
            (self.run_dir / "task").mkdir(parents=True)
            (self.run_dir / "task" / ".task.json.0123abcd.tmp").write_text("{")


def test_a_leftover_temporary_task_file_is_no_task_file(
    case_factory: CaseFactory, harness_home: Path, tmp_path: Path
) -> None:
    # The bundle must still hold a task file (`verify` demands one): the placeholder that says
    # none was given, since a temporary file is never part of the bundle.
    from cto_harness.core.run import execute_run
    from cto_harness.evidence.verify import verify_bundle

    root = case_factory("bad-case", toml="not toml")
    run_dir = tmp_path / "run"
    result = execute_run("bad-case", harness_root=root, run_dir=run_dir,
                         observer=_LeftoverWriter(run_dir))
    assert [b.code for b in result.report.blockers] == ["task_contract_invalid"]
    assert (run_dir / "task" / "NOT-GIVEN.txt").is_file()
    verify_bundle(run_dir)


# --- verify on malformed bundles -----------------------------------------------------------


@pytest.fixture(scope="module")
def sealed_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One real bundle (and its home, for the public key), shared by the verify tests."""
    home = tmp_path_factory.mktemp("verify-home")
    env = {"CTO_HARNESS_HOME": str(home), "CTO_HARNESS_RUNS_DIR": str(home / "runs")}
    proc = _cli("run", CASE, "--harness-root", str(HARNESS_ROOT), env=env)
    assert proc.returncode == 0, proc.stderr
    (bundle,) = list((home / "runs").iterdir())
    return bundle, home


def _copy(sealed: tuple[Path, Path], tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(sealed[0], bundle, symlinks=True)  # copy2: mtimes kept
    return bundle


def _verify(bundle: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return _cli("verify", str(bundle), env={"CTO_HARNESS_HOME": str(home)})


def _resign(bundle: Path, home: Path) -> None:
    """Sign the edited bundle with the home's own key, as only the harness (or a thief of its
    key) could: `verify` checks the signature before it reads anything else, so this is what
    lets a test reach the checks behind it."""
    sign_bundle(bundle, load_or_create_key(home / "keys"), {"resigned": True})


def _relist(bundle: Path) -> None:
    """Recompute every digest a forger can (manifest, report's artifacts, freshness), so that
    only the edited content and the signature can fail."""
    def sha(rel: str) -> str:
        return hashlib.sha256((bundle / rel).read_bytes()).hexdigest()

    report = json.loads((bundle / "report.json").read_text())
    report["artifacts"] = {rel: sha(rel) for rel in report["artifacts"]}
    (bundle / "report.json").write_text(json.dumps(report))
    listed = [line.split("  ", 1)[1] for line in
              (bundle / "artifacts.sha256").read_text().splitlines()]
    (bundle / "artifacts.sha256").write_text("".join(f"{sha(r)}  {r}\n" for r in listed))
    fresh = json.loads((bundle / "freshness.json").read_text())
    fresh["artifacts_manifest_sha256"] = sha("artifacts.sha256")
    (bundle / "freshness.json").write_text(json.dumps(fresh))


def test_verify_names_a_manifest_that_is_not_utf8(sealed_bundle: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    bundle = _copy(sealed_bundle, tmp_path)
    manifest = bundle / "artifacts.sha256"
    manifest.write_bytes(manifest.read_bytes() + b"\xff\xfe  report\xc3.json\n")
    proc = _verify(bundle, sealed_bundle[1])
    assert proc.returncode == 1
    assert "artifacts.sha256 is not the file that was signed" in _one_line(proc.stderr)
    _resign(bundle, sealed_bundle[1])
    proc = _verify(bundle, sealed_bundle[1])
    assert proc.returncode == 1
    assert "artifacts.sha256 is not UTF-8" in _one_line(proc.stderr)


@pytest.mark.parametrize("envelope", ["fifo", "link_to_device", "deep_json", "huge_manifest"])
def test_verify_reads_what_it_checks_with_bounds(sealed_bundle: tuple[Path, Path],
                                                  tmp_path: Path, envelope: str) -> None:
    # Read before anything in the bundle is trusted: a FIFO must not hang the check, a link
    # must not be followed (here to an endless device), deep JSON must not crash it, and a
    # sparse manifest of 300 MiB (no disk used) must not be read into memory.
    bundle = _copy(sealed_bundle, tmp_path)
    target = bundle / "evidence.dsse.json"
    target.unlink()
    if envelope == "fifo":
        os.mkfifo(target)
    elif envelope == "link_to_device":
        target.symlink_to("/dev/zero")
    elif envelope == "deep_json":
        target.write_text("[" * 100_000 + "]" * 100_000)
    else:
        shutil.copy2(sealed_bundle[0] / "evidence.dsse.json", target)
        os.truncate(bundle / "artifacts.sha256", 300 << 20)
    proc = _verify(bundle, sealed_bundle[1])
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    line = _one_line(proc.stderr)
    expected = {"fifo": "not a regular file: evidence.dsse.json",
                "link_to_device": "not a regular file: evidence.dsse.json",
                "deep_json": "evidence.dsse.json is malformed",
                "huge_manifest": "artifacts.sha256 is 314572800 bytes"}[envelope]
    assert expected in line, line


def test_verify_names_an_events_line_that_is_a_json_array(sealed_bundle: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    bundle = _copy(sealed_bundle, tmp_path)
    events = bundle / "events.normalized.jsonl"
    events.write_text(events.read_text() + "[1, 2, 3]\n")
    _relist(bundle)
    _resign(bundle, sealed_bundle[1])
    proc = _verify(bundle, sealed_bundle[1])
    assert proc.returncode == 1
    assert "events.normalized.jsonl line" in _one_line(proc.stderr)
    assert "not a JSON object" in proc.stderr


def test_verify_refuses_unlisted_files_but_the_workspace(sealed_bundle: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    home = sealed_bundle[1]
    for extra in ("private/planted.txt", ".report.json.x.tmp", "backend/.stdout.log.1.tmp",
                  # a folder named like a temporary file is no hiding place
                  ".evil.tmp/report.json", "task/.x.tmp/brief.md", ".empty.tmp/"):
        bundle = _copy(sealed_bundle, tmp_path / extra.replace("/", "_"))
        if extra.endswith("/"):
            (bundle / extra).mkdir()
        else:
            (bundle / extra).parent.mkdir(parents=True, exist_ok=True)
            (bundle / extra).write_text("planted\n")
        proc = _verify(bundle, home)
        assert proc.returncode == 1, extra
        assert "not in artifacts.sha256" in _one_line(proc.stderr)
    bundle = _copy(sealed_bundle, tmp_path / "ws")
    (bundle / "workspace").mkdir(exist_ok=True)
    (bundle / "workspace" / "scratch.txt").write_text("the documented exception\n")
    assert _verify(bundle, home).returncode == 0


def test_verify_of_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    proc = _cli("verify", str(tmp_path / "nowhere"))
    assert proc.returncode == 64
    assert "no bundle folder" in _one_line(proc.stderr)
