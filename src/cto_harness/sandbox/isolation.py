"""Confining the provider while it runs, proven by a canary before every start.

Tiers, strongest first, chosen by probing at run start (`CTO_HARNESS_ISOLATION=auto`, the
default) or forced (`CTO_HARNESS_ISOLATION=bwrap|landlock|none`, for tests and the hostile
suite). Forcing a tier this machine does not have blocks the run `isolation_unavailable` (a bundle
is written); forcing a weaker tier than available is allowed and recorded in the report's reason.
The tiers differ in what the provider may *read and write*:

1. **bwrap** (bubblewrap): the root file system read-only, a private `/dev`, `/proc`, `/tmp` and
   `/run`, every hidden path (HOME, `$CTO_HARNESS_HOME` with keys, registry and every run's bundle,
   the runs directory, the harness's fixture cases, every configured target repository) replaced
   by an empty tmpfs, the interpreter bound back read-only, only the workspace and the provider's
   private dirs bound writable; new PID, IPC, UTS, mount and network namespaces.
2. **landlock**: the launcher (`launcher.py`) sets up namespaces and mounts like bwrap's, then
   Landlock (`landlock.py`): reading under the system directories and the interpreter only,
   writing under the workspace and the provider's private dirs only, TCP only to the endpoint
   forwarder's port (ABI 4+), signals and abstract sockets scoped to the sandbox (ABI 6+).
3. **none**: the launcher's namespaces, no file-system rules.

What holds on **every** tier (see `users.py`, `launcher.py`, `netproxy.py`):

- **Never root**: every sandboxed process (canary, provider, identity probe, verification) runs
  as the run's sandbox uid with no supplementary group and no-new-privs; files are handed to it
  before and taken back before the harness reads them. The harness is non-dumpable.
- **Network by allow-list**: a network namespace with loopback only; the one allowed endpoint
  (Case: the admitted model) is reached through the harness's proxy, logged to
  `backend/network.jsonl`. Where no namespace can be made, `network: shared`, marked in the report.
- **Containment**: a PID namespace whose init dies with the harness (PR_SET_PDEATHSIG chain); after
  each launch every process of the sandbox uid is killed (atomic kill(-1) as that uid) and the
  tree is reported clean only when /proc shows none left.
- Paths the sandbox uid cannot traverse (a HOME of mode 0700 above the interpreter or the
  workspace) are bridged: a tmpfs over the barrier, the granted paths bound back into it.

The canary runs a tiny probe under the exact same confinement, environment, working directory and
limits as the provider, just before it, and checks from the host what the tier promises: which
uid it ran as, that a root-only file, the signing key, the harness's environment and signals to
the harness are out of reach, that a hidden target cannot be read, that nothing outside the
workspace can be written, that a TCP service on the host's loopback and on its other addresses
cannot be reached, and that the allowed endpoint can. A promise the canary breaks blocks the run
`isolation_breach`; a sandbox that cannot start blocks it `isolation_unavailable`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from cto_harness.contracts import IsolationInfo
from cto_harness.errors import Blocked, BlockerCode
from cto_harness.evidence.signing import PRIVATE_KEY, load_or_create_key
from cto_harness.fsutil import atomic_write_text, sha256_file
from cto_harness.sandbox import landlock, users
from cto_harness.sandbox.launch import Launch
from cto_harness.sandbox.netproxy import FORWARDER_CODE, Endpoint, EndpointProxy, endpoint_for
from cto_harness.sandbox.probe import (
    BWRAP_DROP_CAPS,
    LAUNCHER,
    Probe,
    launcher_argv,
    launcher_namespaces,
    probe,
)
from cto_harness.sandbox.process import (
    SANDBOX_TASK_LIMIT,
    ProcessInfo,
    ProcessResult,
    run_process,
)
from cto_harness.sandbox.users import SandboxUser

LANDLOCK_LAUNCHER = Path(landlock.__file__)
# Harness-owned folders of a run's private/ that the provider never sees nor writes (the model
# endpoint's log and the network proxy's socket folder among them).
HARNESS_PRIVATE = frozenset({"snapshot.git", "isolation", "verification", "verify", "verify-home",
                             "model-endpoint", "proxy"})
SYSTEM_READ = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
               "/proc", "/dev")
# Private on every tier: no host IPC endpoint (a Unix socket in /tmp or /run, shared memory),
# and nothing any local user may write (an admitted program that loads code from /var/tmp would
# run code its digest does not cover).
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/run", "/dev/shm", "/dev/mqueue")
# Of those, the scratch space every program expects to write (`/tmp/test.log`): a fresh tmpfs of
# the sandbox's own, world-writable and sticky as on any system (nothing of the host is in it).
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
# Every tmpfs is bounded: its pages are RAM (no disk limit or RLIMIT_FSIZE holds them, and no
# process's memory is charged for them, so the OOM killer cannot free them by killing the
# provider). A scratch folder holds at most the workspace limit (`Confinement.scratch_bytes`);
# a hidden path's tmpfs holds only the mount points of what is bound back into it.
HIDDEN_TMPFS_BYTES = 1 << 20
PROTECTED_TIERS = ("bwrap", "landlock")
SETPRIV_DROP = ("--clear-groups", "--no-new-privs", "--inh-caps", "-all", "--bounding-set", "-all")


class SandboxSettings(Protocol):
    """The settings the isolation reads (the core's `Settings`)."""

    @property
    def home(self) -> Path: ...
    @property
    def runs_dir(self) -> Path: ...
    @property
    def isolation(self) -> str: ...
    @property
    def target_repositories(self) -> tuple[Path, ...]: ...
    @property
    def keys_dir(self) -> Path: ...
    @property
    def sandbox_uids(self) -> tuple[int, int]: ...
    @property
    def workspace_limit_bytes(self) -> int: ...


class SandboxRun(Protocol):
    """What the isolation needs to know of a run (the pipeline's `RunContext` is one)."""

    @property
    def run_dir(self) -> Path: ...
    @property
    def workspace(self) -> Path: ...
    @property
    def private(self) -> Path: ...
    @property
    def backend(self) -> Path: ...
    @property
    def harness_root(self) -> Path: ...
    @property
    def environ(self) -> Mapping[str, str]: ...
    @property
    def settings(self) -> SandboxSettings: ...


def choose_tier(requested: str, found: Probe) -> tuple[str, str]:
    """(tier, why no stronger tier) for CTO_HARNESS_ISOLATION=`requested`."""
    landlock_missing = "Landlock is not available on this kernel"
    if requested == "auto":
        if found.bwrap_ok:
            return "bwrap", ""
        if found.landlock_abi >= 1:
            return "landlock", f"bwrap unavailable: {found.bwrap_error}"
        return "none", f"bwrap unavailable: {found.bwrap_error}; {landlock_missing}"
    order = ("bwrap", "landlock", "none")
    available = [t for t in PROTECTED_TIERS
                 if (found.bwrap_ok if t == "bwrap" else found.landlock_abi >= 1)]
    if requested in PROTECTED_TIERS and requested not in available:
        why = found.bwrap_error if requested == "bwrap" else landlock_missing
        raise Blocked(BlockerCode.ISOLATION_UNAVAILABLE, f"CTO_HARNESS_ISOLATION={requested} but {why}")
    stronger = [t for t in available if order.index(t) < order.index(requested)]
    if not stronger and requested != "none":
        return requested, ("" if requested == "bwrap"
                           else f"bwrap unavailable: {found.bwrap_error}")
    reason = f"forced by CTO_HARNESS_ISOLATION={requested}"
    if stronger:
        reason += f" (available and stronger: {', '.join(stronger)})"
    return requested, reason


def _existing(paths: Iterable[Path]) -> list[Path]:
    return [p for p in paths if os.path.lexists(p)]


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """Drop every path that lies inside another one of the list."""
    ordered = sorted(set(paths), key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in ordered:
        if not any(path == k or k in path.parents for k in kept):
            kept.append(path)
    return kept


def _interpreter_paths() -> list[Path]:
    """The interpreter's folders, and the launcher's, read-only in every sandbox: inside bwrap
    the launcher drops to the sandbox uid and installs the keyring filter itself."""
    found = {Path(sys.base_prefix), Path(sys.prefix), Path(os.path.realpath(sys.executable)).parent,
             Path(sys.executable).parent, LAUNCHER.parent}
    return sorted(found)


def _searchable(path: Path, uid: int, gid: int) -> bool:
    try:
        st = path.stat()
    except OSError:
        return True  # nothing to bridge: a missing folder grants nothing either way
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def barriers(grants: Iterable[Path], user: SandboxUser) -> list[Path]:
    """Folders above a granted path that the sandbox uid cannot traverse (e.g. a 0700 HOME)."""
    if not user.separate:
        return []
    found: set[Path] = set()
    for grant in grants:
        for folder in reversed(Path(os.path.realpath(grant)).parents):
            if folder != Path("/") and not _searchable(folder, user.uid, user.gid):
                found.add(folder)
                break
    return sorted(found)


@dataclass
class Confinement:
    """One confinement: identity, what is hidden, readable and writable, and the network."""

    tier: str
    hidden: list[Path]
    readonly: list[Path]
    writable: list[Path]
    cwd: Path
    probe: Probe
    user: SandboxUser
    endpoint: Endpoint | None = None
    proxy_socket: Path | None = None
    # Trees the launcher hands to the sandbox uid inside the launch (the verification's copy).
    own: list[Path] = field(default_factory=list)
    # Where the launcher's PID 1 reports what it found still running (landlock/none).
    status_path: Path | None = None
    # The host's network, for a build step that fetches from a package registry; a provider,
    # the canary and the identity probe never get it.
    share_network: bool = False
    # The size of each scratch tmpfs (/tmp, /var/tmp, /dev/shm): the run's workspace limit.
    scratch_bytes: int = 2048 << 20

    def tmpfs_bytes(self, folder: Path) -> int:
        return self.scratch_bytes if str(folder) in SCRATCH_DIRS else HIDDEN_TMPFS_BYTES

    @property
    def namespaced(self) -> bool:
        return self.tier == "bwrap" or self.probe.namespaces_ok

    @property
    def network_mode(self) -> str:
        if self.share_network:
            return "shared"
        if self.namespaced:
            return "endpoint" if self.endpoint else "none"
        if self.tier == "landlock" and self.probe.landlock_abi >= 4 and not self.endpoint:
            return "tcp_blocked"
        return "shared"

    @property
    def namespaces(self) -> list[str]:
        if self.tier == "bwrap":
            names = ["mount", "pid", "ipc", "uts", "net"]
        else:
            names = launcher_namespaces() if self.probe.namespaces_ok else []
        return [n for n in names if not (self.share_network and n == "net")]

    def grants(self) -> list[Path]:
        extra = [self.proxy_socket.parent] if self.proxy_socket else []
        return [*self.readonly, *extra, *self.writable]

    def mount_plan(self) -> tuple[list[Path], list[tuple[Path, bool]]]:
        """(tmpfs folders, [(granted path, writable)]) shared by bwrap and the launcher."""
        bridges = barriers(self.grants(), self.user)
        tmpfs = _outermost([*[p for p in _existing(self.hidden) if p.is_dir()
                              and not p.is_symlink()], *bridges,
                            *[Path(d) for d in PRIVATE_DIRS if os.path.isdir(d)]])
        proxy = [self.proxy_socket.parent] if self.proxy_socket else []
        binds = [(p, False) for p in _existing([*self.readonly, *proxy])]
        binds += [(p, True) for p in _existing(self.writable)]
        return tmpfs, binds

    def prefix(self) -> list[str]:
        """The argv prefix that confines what follows it (the forwarder included)."""
        inner = self._forwarder()
        if self.tier == "bwrap":
            outer: list[str] = []
            if self.own:
                outer = launcher_argv({"mode": "exec", "own": [str(p) for p in self.own],
                                        "uid": self.user.uid, "gid": self.user.gid})
            return [*outer, *self._bwrap(), *self._drop(), *inner]
        return [*launcher_argv(self._launcher_spec()), *inner]

    def _forwarder(self) -> list[str]:
        if not (self.endpoint and self.proxy_socket and self.namespaced):
            return []
        spec = {"port": self.endpoint.sandbox_port, "socket": str(self.proxy_socket)}
        return [sys.executable, "-I", "-S", "-c", FORWARDER_CODE, json.dumps(spec), "--"]

    def _drop(self) -> list[str]:
        """Inside bwrap: become the sandbox uid for good (bwrap started as root). The keyring
        filter is already on (run_process installs it for a root harness); a harness that is
        not root has the launcher set no-new-privs and install it here."""
        if not self.user.separate:
            return launcher_argv({"mode": "drop"})
        if self.probe.setpriv_path:
            return [self.probe.setpriv_path, "--reuid", str(self.user.uid), "--regid",
                    str(self.user.gid), *SETPRIV_DROP, "--"]
        return launcher_argv({"mode": "drop", "uid": self.user.uid, "gid": self.user.gid})

    def _launcher_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"uid": self.user.uid, "gid": self.user.gid,
                                "cwd": str(self.cwd), "own": [str(p) for p in self.own]}
        if not self.probe.namespaces_ok:
            blocking = barriers(self.grants(), self.user)
            if blocking:
                raise Blocked(BlockerCode.ISOLATION_UNAVAILABLE,
                              f"the sandbox uid {self.user.uid} cannot reach "
                              f"{', '.join(map(str, blocking))} (no search permission) and no "
                              f"mount namespace can bridge it here "
                              f"({self.probe.namespaces_error}); install the harness and its "
                              f"state (CTO_HARNESS_HOME) where other users may traverse")
        else:
            tmpfs, binds = self.mount_plan()
            hidden_files = [p for p in _existing(self.hidden) if not p.is_dir()]
            spec |= {"namespaces": self.namespaces, "tmpfs": [str(p) for p in tmpfs],
                     "scratch": [str(p) for p in tmpfs if str(p) in SCRATCH_DIRS],
                     "tmpfs_bytes": {str(p): self.tmpfs_bytes(p) for p in tmpfs},
                     "binds": [[str(p), str(p), w] for p, w in binds]
                     + [["/dev/null", str(p), False] for p in hidden_files]}
        if self.status_path is not None:
            spec["status"] = str(self.status_path)
        if self.tier == "landlock":
            proxy = [str(self.proxy_socket.parent)] if self.proxy_socket else []
            spec["landlock"] = {
                "read": [*SYSTEM_READ, *map(str, self.readonly), *proxy],
                "write": [*map(str, self.writable), "/dev/null", *spec.get("scratch", [])],
                "deny_tcp": self.network_mode != "shared",
                "tcp_ports": [self.endpoint.sandbox_port] if self.endpoint else [],
            }
        return spec

    def _bwrap(self) -> list[str]:
        assert self.probe.bwrap_path
        args = [self.probe.bwrap_path, "--die-with-parent", "--new-session", "--unshare-pid",
                "--unshare-ipc", "--unshare-uts",
                *([] if self.share_network else ["--unshare-net"]), "--cap-drop", "ALL"]
        if self.user.separate and os.geteuid() == 0:
            args += BWRAP_DROP_CAPS  # only for the drop that follows; cleared by it
        args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        tmpfs, binds = self.mount_plan()
        for folder in tmpfs:
            size = ["--size", str(self.tmpfs_bytes(folder))]
            if str(folder) in SCRATCH_DIRS:
                args += ["--perms", "1777", *size, "--tmpfs", str(folder)]
            elif folder.parts[:2] != ("/", "dev"):  # --dev made a fresh /dev already
                args += ["--perms", "0755", *size, "--tmpfs", str(folder)]
        for path in _existing(self.hidden):
            if not path.is_dir() or path.is_symlink():
                args += ["--ro-bind", "/dev/null", str(path)]
        # bwrap makes missing parents 0700: create them 0755 so the sandbox uid can traverse.
        made: set[Path] = set()
        for path, _ in binds:
            roots = [t for t in tmpfs if t in path.parents]
            if not roots:
                continue
            for parent in reversed(path.parents):
                if roots[0] in parent.parents and parent not in made:
                    made.add(parent)
                    args += ["--perms", "0755", "--dir", str(parent)]
        for path, writable in sorted(binds, key=lambda b: len(b[0].parts)):
            args += ["--bind" if writable else "--ro-bind", str(path), str(path)]
        return [*args, "--chdir", str(self.cwd), "--"]

    def visible_children(self) -> dict[str, list[str]]:
        """For each hidden path, the names that may legitimately show in it (mount points)."""
        allowed: dict[str, list[str]] = {}
        bound = self.grants()
        for hidden in self.hidden:
            names = {p.relative_to(hidden).parts[0] for p in bound if hidden in p.parents}
            allowed[str(hidden)] = sorted(names)
        return allowed


CANARY_CODE = r"""
import json, os, socket, sys
spec = json.loads(sys.argv[1])
out = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
       "groups": sorted(os.getgroups())}

def read(path, token=None):
    try:
        with open(path, "rb") as handle:
            data = handle.read(1 << 16)
    except OSError:
        return "denied"
    if token is not None:
        return "allowed" if token.encode() in data else "denied"
    return "allowed"

def connect(host, port, payload=None, timeout=2, status=None):
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        return "denied", exc.strerror or type(exc).__name__
    try:
        if payload is not None:
            # Wait for the far end's answer: only then has the connection really gone through.
            conn.sendall(payload.encode())
            reply = conn.recv(64).decode("latin-1")
            # Any answer for a forward (a line with no HTTP version gets an HTTP/0.9 reply).
            ok = bool(reply) if status is None else reply.split(" ")[1:2] == [status]
            return ("allowed" if ok else "denied"), reply[:40]
        conn.sendall(b"canary")
        return "allowed", ""
    except OSError as exc:
        return "denied", exc.strerror or type(exc).__name__
    finally:
        conn.close()

out["read_hidden_target"] = read(spec["read"], spec["token"])
out["read_root_only"] = read(spec["root_only"], spec["root_token"])
out["read_shadow"] = read("/etc/shadow") if os.path.exists("/etc/shadow") else "absent"
out["read_signing_key"] = read(spec["key"]) if spec.get("key") else "absent"
try:
    same_pid_ns = os.readlink("/proc/self/ns/pid") == spec["harness_pid_ns"]
except OSError:
    same_pid_ns = True
out["same_pid_namespace"] = same_pid_ns
if same_pid_ns:
    out["read_harness_environ"] = read("/proc/%d/environ" % spec["harness_pid"])
    try:
        os.kill(spec["harness_pid"], 0)
        out["signal_harness"] = "allowed"
    except OSError:
        out["signal_harness"] = "denied"
else:
    # The harness has no pid here: it can be neither read in /proc nor signalled.
    out["read_harness_environ"] = out["signal_harness"] = "denied"
try:
    with open(spec["write"], "w") as handle:
        handle.write("canary")
    out["write_inside"] = "succeeded"
except OSError as exc:
    out["write_inside"] = "failed: " + str(exc.strerror)
out["connect_out"], out["connect_error"] = connect("127.0.0.1", spec["port"])
if spec.get("host_ip"):
    out["connect_host_ip"], _ = connect(spec["host_ip"], spec["port"])
if spec.get("endpoint_port"):
    # Forward mode: a request line no HTTP server handles (it answers 400 and nothing is served
    # or logged as a request); connect mode: the proxy must answer CONNECT with 200.
    payload, status = "canary\r\n\r\n", None
    if spec.get("endpoint_connect"):
        payload = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (spec["endpoint_connect"],
                                                               spec["endpoint_connect"])
        status = "200"
    # What must get through is given time on a loaded machine (what must not fails at once).
    out["endpoint"], out["endpoint_detail"] = connect("127.0.0.1", spec["endpoint_port"], payload,
                                                      timeout=15, status=status)
# The kernel keyring (shared by a uid's processes, outside every namespace): add_key must fail.
try:
    import ctypes
    add_key = {"x86_64": 248, "aarch64": 217}.get(os.uname().machine)
    libc = ctypes.CDLL(None, use_errno=True)
    added = libc.syscall(add_key, b"user", b"cto-canary", b"x", 1, -2) if add_key else -1
    out["keyring"] = "allowed" if added >= 0 else "denied"
except OSError:
    out["keyring"] = "denied"
visible = {}
for path, allowed in spec["hidden"].items():
    try:
        names = os.listdir(path)
    except OSError:
        continue
    extra = sorted(set(names) - set(allowed))
    if extra:
        visible[path] = extra[:5]
out["hidden_paths_visible"] = visible
print(json.dumps(out))
"""


def _host_address() -> str | None:
    """A non-loopback address of this host (another host, as far as the sandbox can tell)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe_sock:
        probe_sock.connect(("192.0.2.1", 9))  # no packet is sent: it only picks a route
        address: str = probe_sock.getsockname()[0]
        if not address.startswith("127."):
            return address
    return None


def _pid_ns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@dataclass
class Sandbox:
    """The isolation of one run: chosen once, applied to the provider and to verification."""

    ctx: SandboxRun
    tier: str
    reason: str
    found: Probe
    requested: str
    user: SandboxUser
    provider: Confinement | None = None
    canary_result: dict[str, Any] = field(default_factory=dict)
    proxy: EndpointProxy | None = None
    network_log: list[dict[str, Any]] = field(default_factory=list)
    containment: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    _handed: list[Path] = field(default_factory=list)
    _program: list[Path] = field(default_factory=list)  # Launch.readable

    @classmethod
    def for_run(cls, ctx: SandboxRun) -> Sandbox:
        found = probe()
        tier, reason = choose_tier(ctx.settings.isolation, found)
        users.harden_harness()
        # The key exists (and is the harness's alone) before any sandboxed process starts.
        load_or_create_key(ctx.settings.keys_dir)
        user = users.acquire(ctx.settings.sandbox_uids)
        sandbox = cls(ctx=ctx, tier=tier, reason=reason, found=found,
                      requested=ctx.settings.isolation, user=user)
        if not sandbox.network_isolated:
            sandbox.warnings.append(
                f"network: shared: no network namespace can be made here "
                f"({found.namespaces_error}); the provider shares the host's network")
        return sandbox

    @property
    def network_isolated(self) -> bool:
        return self.tier == "bwrap" or self.found.namespaces_ok

    # --- what is hidden, readable, writable -------------------------------------------------

    @property
    def canary_dir(self) -> Path:
        return self.ctx.private / "isolation" / "canary-target"

    def hidden_paths(self) -> list[Path]:
        settings = self.ctx.settings
        if self.tier == "none" and self.user.separate:
            return []  # a sandbox uid of its own: its file permissions are the only rule
        # Every other tier, and `none` for a harness that is not root: the provider then has
        # the operator's uid, so without these mounts it wrote the operator's HOME (a line in
        # ~/.bashrc runs outside any sandbox later), the fixture cases and the targets.
        home = self.ctx.environ.get("HOME") or str(Path.home())
        paths = [Path(home), settings.home, settings.runs_dir, self.ctx.harness_root.absolute(),
                 *settings.target_repositories, self.canary_dir]
        return list(dict.fromkeys(Path(os.path.abspath(p)) for p in paths))

    def provider_writable(self) -> list[Path]:
        """The workspace and the provider's own private dirs (never the harness's, never one
        holding the provider's read-only program)."""
        private = self.ctx.private
        own = sorted(p for p in private.iterdir()
                     if p.is_dir() and not p.is_symlink() and p.name not in HARNESS_PRIVATE
                     and not any(p == r or p in r.parents for r in self._program))
        return [self.ctx.workspace, *own]

    def _confinement(self, writable: list[Path], cwd: Path, *, endpoint: Endpoint | None = None,
                     own: list[Path] | None = None, status: Path | None = None) -> Confinement:
        return Confinement(tier=self.tier, hidden=self.hidden_paths(),
                           readonly=[*_interpreter_paths(), *self._program], writable=writable,
                           cwd=cwd,
                           probe=self.found, user=self.user, endpoint=endpoint,
                           proxy_socket=self.proxy.socket_path if self.proxy else None,
                           own=own or [], status_path=status,
                           scratch_bytes=self.ctx.settings.workspace_limit_bytes)

    # --- the provider --------------------------------------------------------------------

    def confine(self, launch: Launch) -> Launch:
        """Hand the provider its files, start the endpoint proxy, prove the confinement with the
        canary, then return the launch wrapped in it."""
        self._program = [Path(os.path.abspath(p)) for p in launch.readable]
        writable = self.provider_writable()
        users.hand_over(writable, self.user)
        self._handed = writable
        endpoint = None
        if launch.network:
            endpoint = endpoint_for(launch.endpoint)
            if endpoint is None:
                self.warnings.append("the engine asked for a network but no endpoint is "
                                     "admitted: the provider has none")
        if endpoint is not None and self.network_isolated:
            # A Unix socket path has at most 107 bytes: a short folder of its own, not the run's.
            folder = Path(tempfile.mkdtemp(prefix="cto-harness-proxy-"))
            self.proxy = EndpointProxy(endpoint, folder / "endpoint.sock")
            self.proxy.start((self.user.uid, self.user.gid) if self.user.separate else None)
        work = self.ctx.private / "isolation"
        work.mkdir(parents=True, exist_ok=True)
        self.provider = self._confinement(writable, launch.cwd, endpoint=endpoint,
                                          status=work / "provider-status.json")
        env = {**launch.env, **(endpoint.sandbox_env() if endpoint and self.proxy else {})}
        self.canary_result = self._canary(replace(launch, env=env), self.provider)
        if self.proxy is not None:
            self.proxy.phase = "provider"
        if self.canary_result.get("breach"):
            raise Blocked(BlockerCode.ISOLATION_BREACH,
                          f"the {self.tier} canary got through: "
                          f"{'; '.join(self.canary_result['breaches'])}")
        return replace(launch, argv=[*self.provider.prefix(), *launch.argv], env=env)

    def release(self, result: ProcessResult | None) -> Blocked | None:
        """After the provider: prove nothing of it runs, stop the proxy, take the files back.
        Returns (never raises) `containment_failed` when a process of the sandbox uid is left."""
        status = self._status(self.ctx.private / "isolation" / "provider-status.json")
        if self.proxy is not None:
            self.network_log = self.proxy.stop(None)
        killed, clean = self._sweep()
        if result is not None:
            leftovers = [ProcessInfo(int(p["pid"]), str(p["cmdline"]))
                         for p in status.get("leftovers", [])]
            result.leftover_processes += leftovers + killed
            result.tree_clean = result.tree_clean and clean
        self.containment["provider"] = {
            "tree_clean": clean, "namespace_reported_empty": status.get("namespace_empty"),
            "killed_after_exit": len(killed)}
        if not clean:
            return Blocked(BlockerCode.CONTAINMENT_FAILED,
                           f"processes of the sandbox uid {self.user.uid} are still alive after "
                           f"the provider: {', '.join(p.cmdline for p in killed[:3])}")
        users.take_back(self._handed, self.user)
        self._handed = []
        return None

    def finish(self) -> None:
        """At the end of the run's stages: nothing of the sandbox uid may outlive them."""
        killed, clean = self._sweep()
        self.containment["final"] = {"tree_clean": clean, "killed": len(killed)}
        if not clean:
            raise Blocked(BlockerCode.CONTAINMENT_FAILED,
                          f"processes of the sandbox uid {self.user.uid} survived the run")

    def close(self) -> None:
        """Always, once, before the bundle is sealed: the network log, a last sweep, the files
        back to the harness, the uid back to the pool. Never raises."""
        try:
            if self.proxy is not None:
                if not self.network_log:
                    self.network_log = self.proxy.stop(None)
                atomic_write_text(self.ctx.backend / "network.jsonl", "".join(
                    json.dumps(row, sort_keys=True) + "\n" for row in self.network_log))
            _, clean = self._sweep()
            if clean and self._handed:
                users.take_back(self._handed, self.user)
                self._handed = []
        except Exception as exc:
            self.warnings.append(f"closing the sandbox failed: {type(exc).__name__}: {exc}")
        finally:
            self.user.release()

    def _sweep(self) -> tuple[list[ProcessInfo], bool]:
        if not self.user.separate:
            return [], True  # the PID namespace is the containment; see `containment`
        return users.sweep(self.user.uid)

    @staticmethod
    def _status(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _canary(self, launch: Launch, conf: Confinement) -> dict[str, Any]:
        started = time.perf_counter()
        work = self.ctx.private / "isolation"
        self.canary_dir.mkdir(parents=True, exist_ok=True)
        token, root_token = secrets.token_hex(16), secrets.token_hex(16)
        planted = self.canary_dir / "planted-secret.txt"
        atomic_write_text(planted, f"canary {token}\n")
        os.chmod(planted, 0o644)  # world-readable: only hiding may keep it from the canary
        root_only = work / "root-only.txt"
        atomic_write_text(root_only, f"root only {root_token}\n")
        os.chmod(root_only, 0o600)
        probe_file = self.ctx.run_dir / f"canary-write-probe-{secrets.token_hex(4)}"
        host_ip = _host_address()
        listener = self._listener("0.0.0.0" if host_ip else "127.0.0.1",
                                  avoid=conf.endpoint.sandbox_port if conf.endpoint else None)
        key = self.ctx.settings.keys_dir / PRIVATE_KEY
        spec = {"read": str(planted), "token": token, "write": str(probe_file),
                "root_only": str(root_only), "root_token": root_token,
                "key": str(key) if key.exists() else None,
                "harness_pid": os.getpid(), "harness_pid_ns": _pid_ns(),
                "port": listener.getsockname()[1], "host_ip": host_ip,
                "hidden": conf.visible_children()}
        if conf.endpoint and self.proxy:
            spec["endpoint_port"] = conf.endpoint.sandbox_port
            if conf.endpoint.mode == "connect":
                spec["endpoint_connect"] = f"{conf.endpoint.host}:{conf.endpoint.port}"
        status_path = work / "canary-status.json"
        canary_conf = replace(conf, status_path=status_path)
        argv = [*canary_conf.prefix(), sys.executable, "-I", "-S", "-c", CANARY_CODE,
                json.dumps(spec)]
        try:
            result = run_process(argv, cwd=launch.cwd, env=launch.env,
                                 stdout_path=work / "canary.out", stderr_path=work / "canary.err",
                                 timeout_seconds=30, file_size_limit=launch.file_size_limit,
                                 task_limit=SANDBOX_TASK_LIMIT)
            accepted = 0
            with contextlib.suppress(BlockingIOError, OSError):
                while True:
                    conn, _ = listener.accept()
                    conn.close()
                    accepted += 1
        finally:
            listener.close()
        killed, clean = self._sweep()
        wrote = probe_file.exists()
        probe_file.unlink(missing_ok=True)
        try:
            inside = json.loads((work / "canary.out").read_text(encoding="utf-8").strip() or "{}")
        except ValueError:
            inside = {}
        if result.exit_code != 0 or not inside:
            detail = (work / "canary.err").read_text(encoding="utf-8", errors="replace")
            raise Blocked(BlockerCode.ISOLATION_UNAVAILABLE,
                          f"the {self.tier} sandbox did not start the canary (exit "
                          f"{result.exit_code}): {detail.strip()[:300]}")
        return self._judge(conf, inside, wrote=wrote, accepted=accepted, clean=clean,
                           killed=killed, started=started)

    @staticmethod
    def _listener(address: str, avoid: int | None) -> socket.socket:
        while True:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind((address, 0))
            if listener.getsockname()[1] != avoid:
                listener.listen(8)
                listener.setblocking(False)
                return listener
            listener.close()

    def _judge(self, conf: Confinement, inside: dict[str, Any], *, wrote: bool, accepted: int,
               clean: bool, killed: list[ProcessInfo], started: float) -> dict[str, Any]:
        """What the tier promises against what the canary saw (from the host where possible)."""
        shared = conf.network_mode == "shared"
        observed = {
            "uid": inside.get("uid"),
            "read_hidden_target": inside.get("read_hidden_target", "allowed"),
            "write_outside_workspace": "allowed" if wrote else "denied",
            "connect_out": "allowed" if accepted or inside.get("connect_out") == "allowed"
            else "denied",
            "connect_host_ip": inside.get("connect_host_ip", "untested"),
            "read_root_only": inside.get("read_root_only", "allowed"),
            "read_shadow": inside.get("read_shadow", "allowed"),
            "read_signing_key": inside.get("read_signing_key", "allowed"),
            "read_harness_environ": inside.get("read_harness_environ", "allowed"),
            "signal_harness": inside.get("signal_harness", "allowed"),
            "keyring": inside.get("keyring", "allowed"),
        }
        protected = self.tier in PROTECTED_TIERS
        separate = self.user.separate
        expected = {
            "uid": self.user.uid,
            "read_hidden_target": "denied" if protected else "not promised",
            "write_outside_workspace": "denied" if protected else "not promised",
            "connect_out": "allowed" if shared else "denied",
            "connect_host_ip": "allowed" if shared else "denied",
            "read_root_only": "denied" if separate else "not promised",
            "read_shadow": "denied" if separate else "not promised",
            "read_signing_key": "denied",
            "read_harness_environ": "denied",
            "signal_harness": "denied",
            "keyring": "denied",
        }
        breaches = [f"{k}: expected {expected[k]}, got {v}" for k, v in observed.items()
                    if expected[k] == "denied" and v == "allowed"]
        if observed["uid"] != self.user.uid or inside.get("euid") != self.user.uid:
            breaches.append(f"uid: expected {self.user.uid}, got {observed['uid']}")
        if inside.get("uid") == 0 or inside.get("gid") == 0 or 0 in inside.get("groups", [0]):
            breaches.append("the sandboxed process has root's uid, gid or group")
        if not clean:
            breaches.append(f"the canary's processes survived it ({len(killed)})")
        visible = inside.get("hidden_paths_visible", {})
        if protected and visible:
            breaches += [f"hidden path readable: {p} ({', '.join(n)})" for p, n in visible.items()]
        if conf.endpoint and self.proxy:
            reached = [c for c in self.proxy.connections if c.phase == "canary"]
            observed["endpoint"] = ("allowed" if inside.get("endpoint") == "allowed" and any(
                c.result in ("open", "closed") for c in reached) else "denied")
            expected["endpoint"] = "allowed"
            if observed["endpoint"] != "allowed":
                self.warnings.append(
                    f"the allowed endpoint {conf.endpoint.host}:{conf.endpoint.port} did not "
                    f"answer the canary ({inside.get('endpoint_detail') or 'no connection'})")
        return {
            "ran": True, "tier": self.tier, "observed": observed, "expected": expected,
            "groups": inside.get("groups"), "hidden_paths_visible": visible,
            "write_seen_inside": inside.get("write_inside"),
            "same_pid_namespace": inside.get("same_pid_namespace"),
            "breach": bool(breaches), "breaches": breaches,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }

    # --- verification --------------------------------------------------------------------

    def verification_prefix(self, area: Path, cwd: Path) -> list[str]:
        """Verification: the sandbox uid, no network, only its own copy (and home) writable;
        the launcher hands the copy over once the harness has made it."""
        area.mkdir(parents=True, exist_ok=True)
        return self._confinement([area], cwd, own=[area]).prefix()

    # --- the report ----------------------------------------------------------------------

    def info(self) -> IsolationInfo:
        conf = self.provider or self._confinement([self.ctx.workspace], self.ctx.workspace)
        reason = self.reason
        if self.tier == "none" and not reason:
            reason = "no isolation requested"
        return IsolationInfo(
            tier=self.tier,
            tool={"bwrap": self.found.bwrap_path, "landlock": "landlock (ctypes launcher)"}.get(
                self.tier, "launcher (namespaces only)"),
            version={"bwrap": self.found.bwrap_version,
                     "landlock": f"ABI {self.found.landlock_abi}"}.get(self.tier),
            digest=self.found.bwrap_digest if self.tier == "bwrap" else (
                sha256_file(LANDLOCK_LAUNCHER) if self.tier == "landlock" else None),
            namespaces=conf.namespaces,
            hidden_paths=[str(p) for p in conf.hidden],
            writable_paths=[str(p) for p in conf.writable],
            network=conf.network_mode,
            reason=reason,
            requested=self.requested,
            probe=self.found.to_dict(),
            canary=self.canary_result,
            uid=self.user.uid,
            gid=self.user.gid,
            user_source=self.user.source,
            endpoint=conf.endpoint.to_dict() if conf.endpoint else None,
            network_log="backend/network.jsonl" if self.proxy else None,
            connections=len(self.network_log),
            containment={"pid_namespace": "pid" in conf.namespaces,
                         "uid_sweep": self.user.separate, **self.containment},
            warnings=list(self.warnings),
        )


def describe_available(settings: SandboxSettings) -> dict[str, Any]:
    """For `health`: which tiers this machine has, the strongest, and what a run would use."""
    found = probe()
    tiers = {"bwrap": found.bwrap_ok, "landlock": found.landlock_abi >= 1, "none": True}
    strongest = next(t for t in ("bwrap", "landlock", "none") if tiers[t])
    try:
        selected, reason = choose_tier(settings.isolation, found)
    except Blocked as exc:
        selected, reason = "unavailable", exc.message
    return {"tiers": tiers, "strongest": strongest, "selected": selected, "reason": reason,
            "probe": found.to_dict(), "root": os.geteuid() == 0,
            "network_namespaces": found.namespaces_ok or found.bwrap_ok}
