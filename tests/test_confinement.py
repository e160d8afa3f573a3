"""The confinement's parts, each against the real kernel: the sandbox uid (allocation, hand-over,
the sweep that a fork-and-exit chain cannot outrun), the launcher (drop, namespaces, PID 1), the
`.git` check, and the endpoint proxy (forward and CONNECT, refusals, the log)."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cto_harness.core.gitdir import check_git_dir, redact_url
from cto_harness.errors import Blocked
from cto_harness.sandbox import users
from cto_harness.sandbox.netproxy import Endpoint, EndpointProxy, endpoint_for, model_endpoint
from cto_harness.sandbox.probe import LAUNCHER, launcher_namespaces
from cto_harness.sandbox.process import ensure_subreaper, kill_tree
from loopback_helpers import loopback_service

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these tests drive a root harness")
RANGE = users.DEFAULT_UID_RANGE


# --- the sandbox uid ----------------------------------------------------------------------


def test_concurrent_runs_get_distinct_uids_and_a_released_uid_returns() -> None:
    first = users.acquire(RANGE)
    second = users.acquire(RANGE)
    try:
        assert first.uid != second.uid and first.uid != 0 and first.gid == first.uid
        assert RANGE[0] <= first.uid <= RANGE[1] and first.source == "allocated"
    finally:
        second.release()
    single = (first.uid, first.uid)
    with pytest.raises(Blocked) as busy:
        users.acquire(single)  # locked by `first`
    assert busy.value.code == "sandbox_user_unavailable"
    first.release()
    again = users.acquire(single)
    assert again.uid == first.uid
    again.release()


def test_a_uid_whose_holder_is_dropped_without_release_is_free_again() -> None:
    # An interrupt (Ctrl-C, a Ray cancel) can land after a uid is taken and before the run has
    # the sandbox that releases it; a long-lived process (a Ray worker runs task after task)
    # must not keep the uid, or the range runs dry and every later run there is blocked.
    first = users.acquire(RANGE)
    single = (first.uid, first.uid)
    del first
    again = users.acquire(single)
    again.release()
    assert again.uid == single[0]


def test_a_uid_that_belongs_to_an_account_is_never_used() -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    with pytest.raises(Blocked) as caught:
        users.acquire((nobody, nobody))
    assert caught.value.code == "sandbox_user_unavailable"
    assert "passwd or group entry" in caught.value.message


def test_hand_over_and_take_back_never_follow_a_link(tmp_path: Path) -> None:
    user = users.acquire(RANGE)
    try:
        outside = tmp_path / "outside.txt"
        outside.write_text("the harness's\n")
        tree = tmp_path / "tree"
        (tree / "sub").mkdir(parents=True)
        (tree / "sub" / "file").write_text("x")
        (tree / "link").symlink_to(outside)
        users.hand_over([tree], user)
        assert {p.lstat().st_uid for p in [tree, *tree.rglob("*")]} == {user.uid}
        assert outside.stat().st_uid == 0
        users.take_back([tree], user)
        assert {p.lstat().st_uid for p in [tree, *tree.rglob("*")]} == {0}
    finally:
        user.release()


def test_hand_over_never_gives_away_an_inode_another_tree_shares(tmp_path: Path) -> None:
    """A file hard-linked from a store (pi's installed package) is handed over as a copy: the
    store's inode keeps its owner and its bytes whatever the sandbox uid does to its own."""
    user = users.acquire(RANGE)
    try:
        store, tree = tmp_path / "store", tmp_path / "tree"
        store.mkdir()
        tree.mkdir()
        (store / "cli.js").write_text("admitted\n")
        (store / "cli.js").chmod(0o555)
        os.link(store / "cli.js", tree / "cli.js")
        users.hand_over([tree], user)
        handed, kept = (tree / "cli.js").lstat(), (store / "cli.js").lstat()
        assert handed.st_uid == user.uid and kept.st_uid == 0
        assert handed.st_ino != kept.st_ino and kept.st_nlink == 1
        assert (tree / "cli.js").read_text() == "admitted\n" and handed.st_mode & 0o777 == 0o555
        assert sorted(p.name for p in tree.iterdir()) == ["cli.js"]  # no temporary left
    finally:
        user.release()


# Every generation forks the next and exits at once: no pid lives long enough to be found by a
# scan of /proc (so the test watches its progress in a file instead).
# Bounded (120 s) even so: should every containment fail, the chain still ends by itself.
# The chain never outlives this test process, whatever kills it: each generation first checks
# that the test's pid still exists (kill(pid, 0) answers EPERM across uids while it does), and
# gives up after a minute in any case. argv: progress file, test pid, pause between generations;
# with no pause the chain runs as fast as fork allows (a member lives a fraction of a
# millisecond, shorter than one scan of /proc) and notes its progress every 100 generations.
CHAIN = textwrap.dedent("""
    import os, sys, time
    deadline, lifeline, pause = time.time() + 60, int(sys.argv[2]), float(sys.argv[3])
    generation = 0
    while time.time() < deadline:
        try:
            os.kill(lifeline, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass
        if os.fork() != 0:
            os._exit(0)
        generation += 1
        if pause or generation % 100 == 0:
            with open(sys.argv[1], "a") as handle:
                handle.write("x")
        if pause:
            time.sleep(pause)
""")


def _start_chain(user: users.SandboxUser, progress: Path, pause: float = 0.002
                 ) -> subprocess.Popen[bytes]:
    """The chain as the sandbox uid; the launcher only bridges to the interpreter (a mount
    namespace, no PID namespace: nothing contains the chain but what is under test)."""
    spec = {"uid": user.uid, "gid": user.gid, "namespaces": ["mount"], "tmpfs": ["/root"],
            "binds": [[p, p, False] for p in {sys.base_prefix, sys.prefix}]}
    proc = subprocess.Popen([sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(spec), "--",
                             sys.executable, "-I", "-S", "-c", CHAIN, str(progress),
                             str(os.getpid()), str(pause)],
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while _size(progress) < 5:  # running: a few generations have written
        assert time.monotonic() < deadline, "the chain never ran"
        time.sleep(0.01)
    return proc


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _still_running(progress: Path) -> bool:
    before = _size(progress)
    time.sleep(0.3)
    return _size(progress) != before


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder any uid may write (pytest's own tmp folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="cto-confine-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def reaper() -> Iterator[None]:
    """Orphans come to this process (a subreaper) and are reaped as they exit, as the harness
    does: left to an init that never reaps them, a chain would run out of processes and die
    before there is anything to test."""
    assert ensure_subreaper()
    stop = threading.Event()

    def reap() -> None:
        while not stop.is_set():
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    time.sleep(0.001)
            except ChildProcessError:
                time.sleep(0.001)

    thread = threading.Thread(target=reap, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


def _wait_for(path: Path, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        assert proc is None or proc.poll() is None or path.exists()
        time.sleep(0.01)


def test_the_uid_sweep_stops_a_fork_and_exit_chain(shared_dir: Path, reaper: None) -> None:
    user = users.acquire(RANGE)
    try:
        progress = shared_dir / "progress"
        _start_chain(user, progress)
        _, clean = users.sweep(user.uid)
        assert clean
        assert not _still_running(progress), "the chain outlived the sweep"
    finally:
        users.sweep(user.uid)
        user.release()


def test_the_sweep_refuses_root_and_the_harness() -> None:
    assert users.sweep(0) == ([], False)
    assert users.sweep(os.geteuid()) == ([], False)


def test_the_subreaper_kill_never_calls_a_running_chain_clean(shared_dir: Path) -> None:
    """Without a uid to sweep (a harness that is not root), `kill_tree` can be outrun by a
    fork-and-exit chain; then it must say so. Clean means wait() reported no child at all."""
    assert ensure_subreaper()
    user = users.acquire(RANGE)  # only to clean up for sure afterwards
    try:
        progress = shared_dir / "progress"
        proc = _start_chain(user, progress, pause=0)  # as fast as it goes: a scan misses it
        proc.wait()  # the launcher is gone; the chain's generations are orphans of ours
        _, clean = kill_tree(proc.pid, frozenset(), rounds=50, prove=True)
        assert not clean or not _still_running(progress)
    finally:
        users.sweep(user.uid)
        user.release()
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass


# --- the launcher ---------------------------------------------------------------------------


def _launch(spec: dict[str, object], code: str, **kw: object) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(spec), "--", sys.executable,
            "-I", "-S", "-c", code]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload,no-any-return]


IDENTITY = textwrap.dedent("""
    import json, os
    status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines()
                  if ":\\t" in l)
    print(json.dumps({"ids": [os.getresuid(), os.getresgid()], "groups": os.getgroups(),
                      "nnp": status["NoNewPrivs"].strip(), "cap": status["CapEff"].strip(),
                      "pid": os.getpid(), "shadow": os.access("/etc/shadow", os.R_OK),
                      "tmp": sorted(os.listdir("/tmp"))}))
""")


def test_the_launcher_drops_for_good_in_its_own_namespaces(tmp_path: Path) -> None:
    user = users.acquire(RANGE)
    try:
        spec = {"uid": user.uid, "gid": user.gid, "namespaces": launcher_namespaces(),
                "tmpfs": ["/tmp", "/root"], "binds": [[p, p, False] for p in
                                                      {sys.base_prefix, sys.prefix}],
                "status": str(tmp_path / "status.json")}
        done = _launch(spec, IDENTITY)
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
        assert seen["ids"] == [[user.uid] * 3, [user.gid] * 3] and seen["groups"] == []
        assert seen["nnp"] == "1" and int(seen["cap"], 16) == 0
        assert seen["pid"] == 2  # PID 1 is the launcher's init
        assert seen["shadow"] is False and seen["tmp"] == []
        assert json.loads((tmp_path / "status.json").read_text())["namespace_empty"] is True
    finally:
        users.sweep(user.uid)
        user.release()


def test_the_launcher_never_runs_anything_as_root() -> None:
    done = _launch({"uid": 0, "gid": 0, "namespaces": launcher_namespaces()}, "print('ran')")
    assert done.returncode == 125 and "ran" not in done.stdout
    assert "root" in done.stderr


def test_pid_1_kills_and_reports_what_outlives_the_payload(tmp_path: Path) -> None:
    user = users.acquire(RANGE)
    try:
        code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(300)\n"
                "time.sleep(0.2)\n")
        spec = {"uid": user.uid, "gid": user.gid, "namespaces": launcher_namespaces(),
                "tmpfs": ["/root"], "binds": [[p, p, False] for p in
                                             {sys.base_prefix, sys.prefix}],
                "status": str(tmp_path / "status.json")}
        done = _launch(spec, code)
        assert done.returncode == 0, done.stderr
        status = json.loads((tmp_path / "status.json").read_text())
        assert [p["cmdline"].split()[-1] for p in status["leftovers"]] == ["time.sleep(0.2)"]
        assert users.processes_of(user.uid) == []  # killed, not merely reported
    finally:
        users.sweep(user.uid)
        user.release()


def test_a_killed_launcher_takes_its_namespace_with_it(shared_dir: Path) -> None:
    user = users.acquire(RANGE)
    try:
        ready = shared_dir / "ready"
        code = (f"import os, time\nif os.fork() == 0:\n    os.setsid()\n"
                f"    open({str(ready)!r}, 'w').close()\n    time.sleep(300)\ntime.sleep(300)\n")
        spec = {"uid": user.uid, "gid": user.gid, "namespaces": launcher_namespaces(),
                "tmpfs": ["/root"], "binds": [[p, p, False] for p in
                                             {sys.base_prefix, sys.prefix}]}
        argv = [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(spec), "--",
                sys.executable, "-I", "-S", "-c", code]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(ready, proc)
        proc.send_signal(signal.SIGKILL)  # as if the harness above it died
        proc.wait()
        deadline = time.monotonic() + 10
        while users.processes_of(user.uid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert users.processes_of(user.uid) == []
    finally:
        users.sweep(user.uid)
        user.release()


# --- the workspace's .git -------------------------------------------------------------------


def _repo(path: Path, url: str = "https://example.invalid/r.git") -> Path:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "remote", "add", "origin", url], check=True)
    return path


def test_a_plain_git_dir_is_read(tmp_path: Path) -> None:
    checked = check_git_dir(_repo(tmp_path / "ws"))
    assert checked.ok and b"example.invalid" in (checked.config or b"")


@pytest.mark.parametrize("attack", ["symlink", "gitdir", "config_link", "config_hardlink",
                                    "commondir", "alternates", "include", "worktree"])
def test_a_git_dir_that_leads_elsewhere_is_reported_not_read(tmp_path: Path, attack: str) -> None:
    target = _repo(tmp_path / "target", "https://user:SECRET-TOKEN@example.invalid/t.git")
    ws = _repo(tmp_path / "ws")
    git = ws / ".git"
    if attack == "symlink":
        subprocess.run(["rm", "-rf", str(git)], check=True)
        git.symlink_to(target / ".git")
    elif attack == "gitdir":
        subprocess.run(["rm", "-rf", str(git)], check=True)
        git.write_text(f"gitdir: {target}/.git\n")
    elif attack == "config_link":
        (git / "config").unlink()
        (git / "config").symlink_to(target / ".git" / "config")
    elif attack == "config_hardlink":
        (git / "config").unlink()
        os.link(target / ".git" / "config", git / "config")
    elif attack == "commondir":
        (git / "commondir").write_text(f"{target}/.git\n")
    elif attack == "alternates":
        (git / "objects" / "info" / "alternates").write_text(f"{target}/.git/objects\n")
    elif attack == "include":
        with open(git / "config", "a") as handle:
            handle.write(f"[include]\n\tpath = {target}/.git/config\n")
    else:
        with open(git / "config", "a") as handle:
            handle.write(f"[core]\n\tworktree = {target}\n")
    checked = check_git_dir(ws)
    assert not checked.ok
    assert "SECRET-TOKEN" not in " ".join(checked.problems)
    assert checked.config is None or b"SECRET-TOKEN" not in checked.config


def test_urls_lose_their_credentials() -> None:
    assert redact_url("https://x-access-token:ghp_abc@github.com/o/r.git") == \
        "https://***@github.com/o/r.git"
    assert redact_url("https://host/r.git?token=abc") == "https://host/r.git?***"
    assert redact_url("/srv/remote.git") == "/srv/remote.git"


# --- the endpoint proxy ---------------------------------------------------------------------


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    def echo_upper(conn: socket.socket) -> None:
        while data := conn.recv(4096):
            conn.sendall(data.upper())

    with loopback_service(echo_upper) as port:
        yield "127.0.0.1", port


def _client(path: Path, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(path))
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    return reply


def test_forward_mode_carries_bytes_and_logs_them(tmp_path: Path, echo_server) -> None:  # type: ignore[no-untyped-def]
    host, port = echo_server
    proxy = EndpointProxy(Endpoint.parse(f"http://{host}:{port}/v1"), tmp_path / "p.sock")
    proxy.start(None)
    proxy.phase = "provider"
    assert _client(tmp_path / "p.sock", b"hello") == b"HELLO"
    rows = proxy.stop(tmp_path / "network.jsonl")
    assert rows == [json.loads(line) for line in (tmp_path / "network.jsonl").read_text().splitlines()]
    row = rows[0]
    assert (row["host"], row["port"], row["phase"], row["result"]) == (host, port, "provider",
                                                                      "closed")
    assert (row["bytes_to_endpoint"], row["bytes_from_endpoint"]) == (5, 5)
    assert row["started_at"] <= row["ended_at"]


def test_connect_mode_tunnels_only_the_endpoint(tmp_path: Path, echo_server) -> None:  # type: ignore[no-untyped-def]
    host, port = echo_server
    proxy = EndpointProxy(Endpoint.parse(f"https://{host}:{port}"), tmp_path / "p.sock")
    proxy.start(None)
    refused = _client(tmp_path / "p.sock", b"CONNECT evil.example:443 HTTP/1.1\r\n\r\nsecret")
    assert refused.startswith(b"HTTP/1.1 403")
    allowed = _client(tmp_path / "p.sock", f"CONNECT {host}:{port} HTTP/1.1\r\n\r\nhi".encode())
    assert allowed == b"HTTP/1.1 200 Connection established\r\n\r\nHI"
    rows = proxy.stop(None)
    assert [(r["result"], r["requested"]) for r in rows] == [
        ("refused", "evil.example:443"), ("closed", f"{host}:{port}")]
    assert rows[0]["bytes_to_endpoint"] == 0


def test_endpoints_default_to_the_model_providers_public_api() -> None:
    assert endpoint_for(model_endpoint(None, "anthropic")) == \
        Endpoint.parse("https://api.anthropic.com")
    assert endpoint_for(model_endpoint(None, "unknown")) is None
    gateway = endpoint_for(model_endpoint("http://127.0.0.1:9/v1", "openai"))
    assert gateway is not None and gateway.sandbox_url == "http://127.0.0.1:8080/v1"
    assert Endpoint.parse("http://127.0.0.1:4000/v1").sandbox_url == "http://127.0.0.1:4000/v1"
    assert Endpoint.parse("https://api.openai.com/v1").sandbox_env()["HTTPS_PROXY"] == \
        "http://127.0.0.1:8080"


def test_every_guard_removal_of_tools_guard_check_still_applies() -> None:
    """`tools/guard_check.py` removes each guard by a text patch: it must keep matching the source."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import guard_check

    for name, (patches, tests, _) in guard_check.DEMOS.items():
        for rel, old, _new in patches:
            assert old in (guard_check.SRC / rel).read_text(), (name, rel)
        assert all((guard_check.SRC / t).is_file() for t in tests.split()), name
