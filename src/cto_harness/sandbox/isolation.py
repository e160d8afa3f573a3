"""Confining the provider while it runs, proven by a canary before every start.

Tiers, strongest first, chosen by probing at run start (`CTO_HARNESS_ISOLATION=auto`, the
default) or forced (`CTO_HARNESS_ISOLATION=bwrap|landlock|none`, for tests and the hostile
suite). Forcing a tier this machine does not have blocks the run `isolation_unavailable` (a bundle
is written); forcing a weaker tier than available is allowed and recorded in the report's reason.

1. **bwrap** (bubblewrap): the root file system read-only, a private `/dev`, `/proc` and `/tmp`,
   every hidden path (HOME, `$CTO_HARNESS_HOME` with keys, registry and every run's bundle, the
   runs directory, the harness's fixture cases, every configured target repository) replaced by
   an empty tmpfs, the interpreter bound back read-only, only the workspace and the provider's
   private dirs bound writable; new PID, IPC, UTS and mount namespaces, all capabilities dropped,
   `--die-with-parent --new-session`, and a new network namespace unless the engine needs the
   network (the Case engine's model endpoint): then `network: shared`, recorded as such.
2. **landlock**: a launcher (`landlock.py`) confines itself and execs the provider: reading is
   allowed under the system directories and the interpreter only, writing under the workspace and
   the provider's private dirs only; TCP connect/bind denied (ABI 4+) unless the engine needs the
   network; signals scoped to the sandbox (ABI 6+). No PID namespace: the process-tree kill stays.
3. **none**: the process-tree kill only.

The canary runs a tiny probe under the exact same confinement, environment, working directory and
limits as the provider, just before it: read a planted file under a hidden path, write outside the
workspace (checked on the host, not trusted from inside), connect to a TCP listener the harness
opened on 127.0.0.1, and list every hidden path. What the tier promises and what the canary saw
must agree, else the run is blocked `isolation_breach`.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from cto_harness.contracts import IsolationInfo
from cto_harness.errors import Blocked, BlockerCode
from cto_harness.fsutil import atomic_write_text, sha256_file
from cto_harness.sandbox import landlock
from cto_harness.sandbox.launch import Launch
from cto_harness.sandbox.process import run_process

LANDLOCK_LAUNCHER = Path(landlock.__file__)
# Harness-owned folders of a run's private/ that the provider never sees.
HARNESS_PRIVATE = frozenset({"snapshot.git", "isolation", "verification", "verify", "verify-home",
                             "model-endpoint"})
SYSTEM_READ = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
               "/proc", "/dev")
PROTECTED_TIERS = ("bwrap", "landlock")


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


class SandboxRun(Protocol):
    """What the isolation needs to know of a run (the pipeline's `RunContext` is one)."""

    @property
    def run_dir(self) -> Path: ...
    @property
    def workspace(self) -> Path: ...
    @property
    def private(self) -> Path: ...
    @property
    def harness_root(self) -> Path: ...
    @property
    def environ(self) -> Mapping[str, str]: ...
    @property
    def settings(self) -> SandboxSettings: ...


@dataclass(frozen=True)
class Probe:
    bwrap_path: str | None
    bwrap_error: str | None
    bwrap_version: str | None
    bwrap_digest: str | None
    landlock_abi: int

    @property
    def bwrap_ok(self) -> bool:
        return self.bwrap_path is not None and self.bwrap_error is None

    def to_dict(self) -> dict[str, Any]:
        return {"bwrap": self.bwrap_path, "bwrap_error": self.bwrap_error,
                "bwrap_version": self.bwrap_version, "landlock_abi": self.landlock_abi}


@functools.lru_cache(maxsize=1)
def probe() -> Probe:
    """What this machine offers; cached for the process (a few milliseconds, once)."""
    path = shutil.which("bwrap")
    error = version = digest = None
    if path is None:
        error = "bwrap is not installed (Debian package bubblewrap)"
    else:
        try:
            trial = subprocess.run(
                [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                 "--unshare-pid", "--unshare-net", "--cap-drop", "ALL", "--die-with-parent",
                 "--", "/bin/true"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20,
            )
            if trial.returncode != 0:
                error = f"bwrap cannot create namespaces here: {trial.stderr.strip()[:200]}"
            version = subprocess.run([path, "--version"], capture_output=True, text=True,
                                     timeout=20).stdout.strip() or None
            digest = sha256_file(Path(path).resolve())
        except (OSError, subprocess.SubprocessError) as exc:
            error = f"bwrap does not run: {exc}"
    return Probe(path, error, version, digest, landlock.abi_version())


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
    found = {Path(sys.base_prefix), Path(sys.prefix), Path(os.path.realpath(sys.executable)).parent,
             Path(sys.executable).parent}
    return sorted(found)


@dataclass
class Confinement:
    """One confinement: what is hidden, readable and writable, and whether the network is."""

    tier: str
    hidden: list[Path]
    readonly: list[Path]
    writable: list[Path]
    cwd: Path
    network: bool
    probe: Probe

    @property
    def network_mode(self) -> str:
        if self.network or self.tier == "none":
            return "shared"
        if self.tier == "bwrap":
            return "none"
        return "tcp_blocked" if self.probe.landlock_abi >= 4 else "shared"

    @property
    def namespaces(self) -> list[str]:
        if self.tier != "bwrap":
            return []
        return ["mount", "pid", "ipc", "uts", *([] if self.network else ["net"])]

    def prefix(self) -> list[str]:
        """The argv prefix that confines what follows it."""
        if self.tier == "bwrap":
            return self._bwrap()
        if self.tier == "landlock":
            spec = {
                "read": [*SYSTEM_READ, *map(str, self.readonly)],
                "write": [*map(str, self.writable), "/dev/null"],
                "deny_tcp": not self.network,
                "cwd": str(self.cwd),
            }
            return [sys.executable, "-I", "-S", str(LANDLOCK_LAUNCHER), json.dumps(spec), "--"]
        return []

    def _bwrap(self) -> list[str]:
        assert self.probe.bwrap_path
        args = [self.probe.bwrap_path, "--die-with-parent", "--new-session", "--unshare-pid",
                "--unshare-ipc", "--unshare-uts", "--cap-drop", "ALL"]
        if not self.network:
            args.append("--unshare-net")
        args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        tmp = Path("/tmp")
        for path in _outermost(_existing(self.hidden)):
            if tmp in path.parents:
                continue  # already behind the private /tmp
            if path.is_dir() and not path.is_symlink():
                args += ["--tmpfs", str(path)]
            else:
                args += ["--ro-bind", "/dev/null", str(path)]
        for path in _existing(self.readonly):
            args += ["--ro-bind", str(path), str(path)]
        for path in _existing(self.writable):
            args += ["--bind", str(path), str(path)]
        return [*args, "--chdir", str(self.cwd), "--"]

    def visible_children(self) -> dict[str, list[str]]:
        """For each hidden path, the names that may legitimately show in it (mount points)."""
        allowed: dict[str, list[str]] = {}
        bound = [*self.readonly, *self.writable]
        for hidden in self.hidden:
            names = {p.relative_to(hidden).parts[0] for p in bound if hidden in p.parents}
            allowed[str(hidden)] = sorted(names)
        return allowed


CANARY_CODE = r"""
import json, os, socket, sys
spec = json.loads(sys.argv[1])
out = {}
try:
    with open(spec["read"], "rb") as handle:
        data = handle.read()
    out["read_hidden_target"] = "allowed" if spec["token"].encode() in data else "denied"
except OSError as exc:
    out["read_hidden_target"] = "denied"
    out["read_error"] = exc.strerror
try:
    with open(spec["write"], "w") as handle:
        handle.write("canary")
    out["write_inside"] = "succeeded"
except OSError as exc:
    out["write_inside"] = "failed: " + str(exc.strerror)
try:
    conn = socket.create_connection(("127.0.0.1", spec["port"]), timeout=2)
    conn.sendall(b"canary")
    conn.close()
    out["connect_out"] = "allowed"
except OSError as exc:
    out["connect_out"] = "denied"
    out["connect_error"] = exc.strerror or type(exc).__name__
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


@dataclass
class Sandbox:
    """The isolation of one run: chosen once, applied to the provider and to verification."""

    ctx: SandboxRun
    tier: str
    reason: str
    found: Probe
    requested: str
    provider: Confinement | None = None
    canary_result: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_run(cls, ctx: SandboxRun) -> Sandbox:
        found = probe()
        tier, reason = choose_tier(ctx.settings.isolation, found)
        return cls(ctx=ctx, tier=tier, reason=reason, found=found,
                   requested=ctx.settings.isolation)

    # --- what is hidden, readable, writable -------------------------------------------------

    @property
    def canary_dir(self) -> Path:
        return self.ctx.private / "isolation" / "canary-target"

    def hidden_paths(self) -> list[Path]:
        if self.tier == "none":
            return []
        settings = self.ctx.settings
        home = self.ctx.environ.get("HOME") or str(Path.home())
        paths = [Path(home), settings.home, settings.runs_dir, self.ctx.harness_root.absolute(),
                 *settings.target_repositories, self.canary_dir]
        return list(dict.fromkeys(Path(os.path.abspath(p)) for p in paths))

    def provider_writable(self) -> list[Path]:
        """The workspace and the provider's own private dirs (never the harness's)."""
        private = self.ctx.private
        own = sorted(p for p in private.iterdir()
                     if p.is_dir() and not p.is_symlink() and p.name not in HARNESS_PRIVATE)
        return [self.ctx.workspace, *own]

    def _confinement(self, writable: list[Path], cwd: Path, network: bool) -> Confinement:
        return Confinement(tier=self.tier, hidden=self.hidden_paths(),
                           readonly=_interpreter_paths(), writable=writable, cwd=cwd,
                           network=network, probe=self.found)

    # --- the provider --------------------------------------------------------------------

    def confine(self, launch: Launch) -> Launch:
        """Prove the confinement with the canary, then return the launch wrapped in it."""
        self.provider = self._confinement(self.provider_writable(), launch.cwd, launch.network)
        self.canary_result = self._canary(launch, self.provider)
        if self.canary_result.get("breach"):
            raise Blocked(BlockerCode.ISOLATION_BREACH,
                          f"the {self.tier} canary got through: "
                          f"{'; '.join(self.canary_result['breaches'])}")
        return replace(launch, argv=[*self.provider.prefix(), *launch.argv])

    def _canary(self, launch: Launch, conf: Confinement) -> dict[str, Any]:
        started = time.perf_counter()
        work = self.ctx.private / "isolation"
        self.canary_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(16)
        planted = self.canary_dir / "planted-secret.txt"
        atomic_write_text(planted, f"canary {token}\n")
        probe_file = self.ctx.run_dir / f"canary-write-probe-{secrets.token_hex(4)}"
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        spec = {"read": str(planted), "token": token, "write": str(probe_file),
                "port": listener.getsockname()[1], "hidden": conf.visible_children()}
        argv = [*conf.prefix(), sys.executable, "-I", "-S", "-c", CANARY_CODE, json.dumps(spec)]
        try:
            result = run_process(argv, cwd=launch.cwd, env=launch.env,
                                 stdout_path=work / "canary.out", stderr_path=work / "canary.err",
                                 timeout_seconds=30, file_size_limit=launch.file_size_limit)
            accepted = False
            try:
                conn, _ = listener.accept()
                conn.close()
                accepted = True
            except (BlockingIOError, OSError):
                pass
        finally:
            listener.close()
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
        observed = {
            "read_hidden_target": inside.get("read_hidden_target", "allowed"),
            "write_outside_workspace": "allowed" if wrote else "denied",
            "connect_out": "allowed" if accepted or inside.get("connect_out") == "allowed"
            else "denied",
        }
        protected = self.tier in PROTECTED_TIERS
        expected = {
            "read_hidden_target": "denied" if protected else "allowed",
            "write_outside_workspace": "denied" if protected else "allowed",
            "connect_out": "denied" if conf.network_mode in ("none", "tcp_blocked") else "allowed",
        }
        breaches = [f"{k}: expected {expected[k]}, got {v}" for k, v in observed.items()
                    if expected[k] == "denied" and v == "allowed"]
        visible = inside.get("hidden_paths_visible", {})
        if protected and visible:
            breaches += [f"hidden path readable: {p} ({', '.join(n)})" for p, n in visible.items()]
        return {
            "ran": True, "tier": self.tier, "observed": observed, "expected": expected,
            "hidden_paths_visible": visible, "write_seen_inside": inside.get("write_inside"),
            "breach": bool(breaches), "breaches": breaches,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }

    # --- verification --------------------------------------------------------------------

    def verification_prefix(self, area: Path, cwd: Path) -> list[str]:
        """Verification: no network, only its own copy (and home) writable."""
        return self._confinement([area], cwd, network=False).prefix()

    # --- the report ----------------------------------------------------------------------

    def info(self) -> IsolationInfo:
        conf = self.provider or self._confinement([self.ctx.workspace], self.ctx.workspace, False)
        reason = self.reason
        if self.tier == "none" and not reason:
            reason = "no isolation requested"
        return IsolationInfo(
            tier=self.tier,
            tool={"bwrap": self.found.bwrap_path, "landlock": "landlock (ctypes launcher)"}.get(
                self.tier),
            version={"bwrap": self.found.bwrap_version,
                     "landlock": f"ABI {self.found.landlock_abi}"}.get(self.tier),
            digest=self.found.bwrap_digest if self.tier == "bwrap" else (
                sha256_file(LANDLOCK_LAUNCHER) if self.tier == "landlock" else None),
            namespaces=conf.namespaces,
            hidden_paths=[str(p) for p in conf.hidden],
            writable_paths=[str(p) for p in conf.writable] if self.tier != "none" else [],
            network=conf.network_mode,
            reason=reason,
            requested=self.requested,
            probe=self.found.to_dict(),
            canary=self.canary_result,
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
            "probe": found.to_dict()}
