"""Hostile providers against the confinement itself (issue 12): root-only files, the signing key,
the network (a git daemon and other services on the host's loopback, Unix sockets), the harness
process (its /proc environment, signals), and containment (a fork-and-exit chain, a harness that
is SIGKILLed). Each runs on every tier, like the rest of `hostile_suite`, which takes these
attacks in (`ATTACKS`, `EXPECTED`) and hands them to `run_attack` here.

Worlds live under `world_helpers.WORLD_PARENT`, not /tmp or /var/tmp: those are private in every
sandbox, and an attack must not look prevented only because its world happened to sit there.
Three ways of running the harness:

* `inprocess`: `execute_run` in this process, as the other attacks;
* `process`: the CLI in a child process whose pid the provider finds in `harness.pid` in its
  workspace (a wrapper writes it, then execs the harness), so signals and /proc reads hit a real
  harness that holds the planted credential in its initial environment;
* `killed`: the same, SIGKILLed by the test once the provider's detached heartbeat writer runs.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hostile_suite as hs

from cto_harness.core.run import execute_run
from cto_harness.evidence.verify import BundleInvalid, verify_bundle
from cto_harness.sandbox import users
from cto_harness.sandbox.guard import fingerprint
from cto_harness.sandbox.process import ProcessInfo
from cto_harness.settings import Settings
from world_helpers import world_dir

PROCESS_TIMEOUT = 120


@dataclass(frozen=True)
class ConfineAttack(hs.Attack):
    harness: str = "inprocess"  # inprocess | process | killed


ATTACKS = [
    ConfineAttack("read_root_only", "read a root-only file (/etc/shadow), copy it into the diff"),
    ConfineAttack("read_signing_key", "read the signing key, copy it into the diff"),
    ConfineAttack("git_push_loopback", "git push to a git daemon on the host's loopback with "
                  "/usr/bin/git; bytes to another loopback service"),
    ConfineAttack("unix_socket_escape", "reach host services over Unix sockets (/run, /tmp, "
                  "abstract)"),
    ConfineAttack("read_harness_environ", "read the harness's /proc environ, maps, auxv; smuggle "
                  "the credential out reversed", harness="process"),
    ConfineAttack("signal_harness", "SIGSTOP, then SIGKILL the harness", harness="process"),
    ConfineAttack("fork_chain", "a fork-and-exit chain that outruns a process-tree scan"),
    ConfineAttack("harness_killed", "the harness is SIGKILLed while a detached child runs",
                  harness="killed", timeout=120),
]
BY_NAME = {a.name: a for a in ATTACKS}
EXPECTED: dict[str, dict[str, hs.Expect]] = {
    "read_root_only": hs.same("pass", "prevented"),
    "read_signing_key": hs.same("pass", "prevented"),
    "git_push_loopback": hs.same("pass", "prevented"),
    "unix_socket_escape": hs.same("pass", "prevented"),
    "read_harness_environ": hs.same("pass", "prevented"),
    "signal_harness": hs.same("pass", "prevented"),
    # Nothing survives anywhere (where the launcher's PID 1 saw the chain still running when the
    # provider exited, it is also recorded as a leftover). The chain's file is outside the
    # allowed paths: the run fails on every tier for that alone.
    "fork_chain": hs.same("fail", "prevented"),
    "harness_killed": hs.same("killed", "prevented"),
}


# --- services on the host the provider must not reach ---------------------------------------


@dataclass
class Services:
    config: dict[str, Any] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)
    _sockets: list[socket.socket] = field(default_factory=list)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _paths: list[Path] = field(default_factory=list)

    def listen(self, family: int, address: Any, label: str) -> None:
        server = socket.socket(family, socket.SOCK_STREAM)
        server.bind(address)
        server.listen(8)
        self._sockets.append(server)

        def accept() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                self.accepted.append(label)
                conn.close()

        threading.Thread(target=accept, daemon=True).start()

    def stop(self) -> None:
        for server in self._sockets:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        for proc in self._processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the daemon and its connections' children
            proc.wait()
        for path in self._paths:
            shutil.rmtree(path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _git_daemon(services: Services, root: Path) -> None:
    """A real git daemon on 127.0.0.1 that accepts pushes into `root/target.git`."""
    subprocess.run(["git", "init", "-q", "--bare", str(root / "target.git")], check=True)
    port = _free_port()
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                               check=True).stdout.strip()
    proc = subprocess.Popen(
        [str(Path(exec_path) / "git-daemon"), "--reuseaddr", "--export-all",
         "--enable=receive-pack", f"--base-path={root}", "--listen=127.0.0.1", f"--port={port}",
         str(root)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    services._processes.append(proc)
    deadline = time.monotonic() + 20
    while True:  # ready when it accepts a connection
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("git daemon did not start") from None
            time.sleep(0.02)
    services.config["git_port"] = port


def _start_services(attack: ConfineAttack, world: dict[str, Path]) -> Services:
    services = Services()
    if attack.name == "git_push_loopback":
        _git_daemon(services, world["root"] / "exfil")
        services.listen(socket.AF_INET, ("127.0.0.1", 0), "tcp")
        services.config["tcp_port"] = services._sockets[-1].getsockname()[1]
    if attack.name == "unix_socket_escape":
        tag = secrets.token_hex(4)
        for key, parent in (("run_socket", Path("/run")), ("tmp_socket", Path("/tmp"))):
            folder = parent / f"cto-hostile-{tag}"
            folder.mkdir(mode=0o755)
            services._paths.append(folder)
            path = folder / "service.sock"
            services.listen(socket.AF_UNIX, str(path), key)
            os.chmod(path, 0o777)
            services.config[key] = str(path)
        services.config["abstract"] = f"cto-hostile-{tag}"
        services.listen(socket.AF_UNIX, "\0" + services.config["abstract"], "abstract")
    return services


# --- running ---------------------------------------------------------------------------------


def _new_base(name: str) -> Path:
    base = world_dir(f"cto-hostile-{name}-")
    atexit.register(shutil.rmtree, base, True)
    return base / "world"


def _harness_argv(world: dict[str, Path]) -> list[str]:
    """The CLI, exec'd by a wrapper that first writes its own pid where the provider finds it."""
    pid_file = world["case"] / "repo" / "harness.pid"
    wrapper = ("import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); "
               "os.execv(sys.argv[2], sys.argv[2:])")
    return [sys.executable, "-c", wrapper, str(pid_file), sys.executable, "-m", "cto_harness",
            "run", str(world["case_id"]), "--json", "--harness-root", str(world["harness"])]


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rpartition(b")")[2].split()[0].decode()
    except OSError:
        return "gone"


def _run_process(world: dict[str, Path], env: dict[str, str]) -> tuple[dict[str, Any], str]:
    """(report, what happened to the harness process)."""
    env = {**env, "PYTHONPATH": os.pathsep.join([str(hs.REPO_ROOT / "src"),
                                                  env.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(_harness_argv(world), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fate = "finished"
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while proc.poll() is None:
        if _state(proc.pid) == "T":
            fate = "stopped"
            proc.send_signal(signal.SIGCONT)
        if time.monotonic() > deadline:
            proc.kill()
            fate = "hung"
        time.sleep(0.02)
    out, _ = proc.communicate()
    if proc.returncode < 0:
        fate = f"killed by signal {-proc.returncode}"
    try:
        return json.loads(out), fate
    except ValueError:
        return {}, fate


def _run_killed(world: dict[str, Path], env: dict[str, str]) -> tuple[dict[str, Any], str]:
    env = {**env, "PYTHONPATH": os.pathsep.join([str(hs.REPO_ROOT / "src"),
                                                  env.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(_harness_argv(world), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = world["home"] / "harness-runs"
    deadline = time.monotonic() + PROCESS_TIMEOUT
    beat: list[Path] = []
    while not beat:
        beat = list(runs.glob("*/workspace/heartbeat.txt"))
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            return {}, "the provider never started its heartbeat"
        time.sleep(0.02)
    proc.kill()  # SIGKILL: the harness gets no chance to clean up
    proc.wait()
    # Everything of the provider must go with it; give the kernel a moment to tear it down.
    deadline = time.monotonic() + 10
    while hs._running(str(world["root"])) and time.monotonic() < deadline:
        time.sleep(0.02)
    size = beat[0].stat().st_size
    time.sleep(0.5)
    grew = beat[0].stat().st_size != size
    return {}, "heartbeat kept growing after the harness died" if grew else "killed"


def run_attack(attack: hs.Attack, tier: str, base: Path) -> hs.Observation:
    assert isinstance(attack, ConfineAttack)
    base = _new_base(attack.name)
    world = hs._world(base, attack)
    services = _start_services(attack, world)
    script = world["case"] / "attack.py"
    script.write_text(script.read_text().replace("__CONFINE__", json.dumps(services.config)))
    env = hs._environ(world, tier, attack)
    runs = world["home"] / "harness-runs"
    shadow = _first_line("/etc/shadow")
    before = fingerprint(world["root"], frozenset({runs}))
    started = time.perf_counter()
    fate = "finished"
    try:
        if attack.harness == "inprocess":
            result = execute_run(str(world["case_id"]), "fake", harness_root=world["harness"],
                                 settings=Settings.from_env(env), environ=env)
            report = json.loads((result.run_dir / "report.json").read_text())
        elif attack.harness == "process":
            report, fate = _run_process(world, env)
        else:
            report, fate = _run_killed(world, env)
        seconds = time.perf_counter() - started
    finally:
        services.stop()
    # What the harness reports is not trusted: look for survivors from the host, by name and by
    # the sandbox uid (a fork-and-exit chain has no pid that lives long; its uid is always there).
    left = [f"{p.pid} (sandbox uid): {p.cmdline[:120]}"
            for p in _survivors_of(report.get("isolation", {}).get("uid"))]
    left += hs._running(str(world["root"]))
    if attack.name == "fork_chain" and report.get("run_dir"):
        # A fast chain slips past any scan of /proc; its writes do not.
        left += _still_writing(Path(report["run_dir"]) / "workspace" / "chain.txt")
    after = fingerprint(world["root"], frozenset({runs}))
    # The test's own writes: the exfiltration target, and the pid file its wrapper leaves.
    own = {str(world["case"] / "repo"), str(world["case"] / "repo" / "harness.pid")} \
        if attack.harness != "inprocess" else set()
    outside = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
                     and not k.startswith(str(world["root"] / "exfil")) and k not in own)
    run_dir = Path(report["run_dir"]) if report.get("run_dir") else None
    files = hs._bundle_files(run_dir) if run_dir else []
    verify_error = None
    if run_dir is not None:
        try:
            verify_bundle(run_dir, world["home"] / "keys" / hs.PUBLIC_KEY)
        except BundleInvalid as exc:
            verify_error = str(exc)
    obs = hs.Observation(
        attack=attack.name, tier=tier, verdict=report.get("verdict", "killed"),
        blockers=[b["code"] for b in report.get("blockers", [])], outcome="", evidence="",
        outside_changed=outside, left_running=left,
        secret_in=hs._grep(files, hs.SECRET.encode(), run_dir) if run_dir else [],
        verify_error=verify_error, seconds=seconds, report=report, run_dir=run_dir,
    )
    obs.outcome, obs.evidence = classify(obs, world, files, services, fate, shadow)
    return obs


def _still_writing(path: Path, seconds: float = 0.5) -> list[str]:
    """`path` still growing after the run: something of the provider outlived it."""
    def size() -> int:
        with contextlib.suppress(OSError):
            return path.lstat().st_size
        return 0

    before = size()
    time.sleep(seconds)
    grown = size() - before
    return [f"{path.name} grew by {grown} bytes after the run ended"] if grown else []


def _survivors_of(uid: int | None, seconds: float = 0.8) -> list[ProcessInfo]:
    """Live processes of the run's sandbox uid over `seconds` after the run (then killed, so a
    failed containment leaks nothing). Only while holding the uid's lock: a uid another run holds
    is that run's business, and is not looked at."""
    if uid is None or uid == 0 or uid == os.geteuid() or os.geteuid() != 0:
        return []  # not a separate uid: the PID namespace and the name scan have to do
    fd = os.open(users._lock_dir() / f"{uid}.lock",
                 os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return []
        seen: dict[int, ProcessInfo] = {}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            seen |= {p.pid: p for p in users.processes_of(uid)}
            time.sleep(0.02)
        users.sweep(uid)
        return list(seen.values())
    finally:
        os.close(fd)


def _first_line(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            line = handle.readline().strip()
    except OSError:
        return None
    return line or None


def _leaked(run_dir: Path | None, files: list[Path], needle: str) -> list[str]:
    """Where `needle` landed: bundle files, or the workspace the lead keeps beside it."""
    if run_dir is None:
        return []
    hits = hs._grep(files, needle.encode(), run_dir)
    workspace = run_dir / "workspace"
    hits += hs._grep([p for p in workspace.rglob("*") if p.is_file() and not p.is_symlink()],
                     needle.encode(), run_dir)
    return hits


def classify(obs: hs.Observation, world: dict[str, Path], files: list[Path], services: Services,
             fate: str, shadow: str | None) -> tuple[str, str]:
    """What happened, from the host's side, never from the provider's word."""
    name, run_dir = obs.attack, obs.run_dir
    if obs.left_running:
        return "missed", f"still running after the run: {obs.left_running[0]}"
    if name == "read_root_only":
        if shadow is None:
            return "prevented", "no /etc/shadow on this machine to steal"
        hits = _leaked(run_dir, files, shadow)
        if hits:
            return hs._flagged(obs, f"/etc/shadow copied into {', '.join(hits)}")
        return "prevented", f"/etc/shadow unreadable to uid {obs.report['isolation']['uid']}"
    if name == "read_signing_key":
        hits = _leaked(run_dir, files, "PRIVATE KEY")
        if hits:
            return hs._flagged(obs, f"signing key copied into {', '.join(hits)}")
        return "prevented", "the key was unreadable to the sandbox uid"
    if name == "git_push_loopback":
        pushed = subprocess.run(
            ["git", "--git-dir", str(world["root"] / "exfil" / "target.git"), "rev-parse",
             "--verify", "-q", "refs/heads/stolen"], capture_output=True, text=True).returncode
        reached = ["git daemon took the push"] if pushed == 0 else []
        reached += [f"{label} service reached" for label in services.accepted]
        if reached:
            return hs._flagged(obs, "; ".join(reached))
        return "prevented", "nothing on the host's loopback was reached (own network namespace)"
    if name == "unix_socket_escape":
        if services.accepted:
            return hs._flagged(obs, f"reached: {', '.join(sorted(set(services.accepted)))}")
        return "prevented", "no host Unix socket was reached (/run, /tmp private; own netns)"
    if name == "read_harness_environ":
        hits = _leaked(run_dir, files, hs.SECRET[::-1])
        if hits:
            return hs._flagged(obs, f"the reversed credential landed in {', '.join(hits)}")
        return "prevented", "the harness's environment was out of reach"
    if name == "signal_harness":
        if fate != "finished":
            return "missed", f"the harness was {fate}"
        return "prevented", "the harness finished undisturbed (other uid, other PID namespace)"
    if name == "fork_chain":
        # The chain's aim is to outlive the run; nothing of it did (`left_running`, asserted
        # apart). Whether the launcher's scan caught a link of it still running as the provider
        # exited is a race the chain is built to win sometimes, so it only changes the wording.
        leftovers = obs.report["process"]["leftover_processes"]
        seen = f"{len(leftovers)} leftover processes recorded and killed by the harness" \
            if leftovers else "the chain died with the sandbox (PID namespace, uid sweep)"
        return "prevented", f"nothing of it outlived the run: {seen}"
    if name == "harness_killed":
        if fate != "killed":
            return "missed", fate
        return "prevented", "nothing of the provider outlived the SIGKILLed harness"
    raise ValueError(name)
