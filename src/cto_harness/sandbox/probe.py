"""What this machine can isolate with: bubblewrap (does it run, which version, its digest),
the kernel's Landlock ABI, `setpriv`, and whether the launcher can create its namespaces.

Probed once per process with three short child processes (~40 ms). `start_probe` begins it on a
background thread, so that a `run` or `suite` command's imports hide it; `probe` waits for that
result (or probes now). The probe runs before any run folder exists, as before (a signal during
a child's start must not orphan a child mid-run), and stdlib only: it is imported first.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cto_harness.fsutil import sha256_file
from cto_harness.sandbox import landlock, launcher

# Its real path: bwrap starts it inside the sandbox, where only that path is bound.
LAUNCHER = Path(os.path.realpath(launcher.__file__))
ROOT_NAMESPACES = ("mount", "pid", "net", "ipc", "uts")
BWRAP_DROP_CAPS = ("--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add",
                   "CAP_SETPCAP")

_start_lock = threading.Lock()
_started: threading.Thread | None = None


@dataclass(frozen=True)
class Probe:
    bwrap_path: str | None
    bwrap_error: str | None
    bwrap_version: str | None
    bwrap_digest: str | None
    landlock_abi: int
    setpriv_path: str | None = None
    # None when the launcher can create its namespaces here (mount, pid, net, ipc, uts).
    namespaces_error: str | None = "not probed"

    @property
    def bwrap_ok(self) -> bool:
        return self.bwrap_path is not None and self.bwrap_error is None

    @property
    def namespaces_ok(self) -> bool:
        return self.namespaces_error is None

    def to_dict(self) -> dict[str, Any]:
        return {"bwrap": self.bwrap_path, "bwrap_error": self.bwrap_error,
                "bwrap_version": self.bwrap_version, "landlock_abi": self.landlock_abi,
                "setpriv": self.setpriv_path, "namespaces_error": self.namespaces_error}


def launcher_namespaces() -> list[str]:
    return [*ROOT_NAMESPACES, *([] if os.geteuid() == 0 else ["user"])]


def launcher_argv(spec: dict[str, Any]) -> list[str]:
    return [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(spec), "--"]


def _probe_namespaces() -> str | None:
    spec: dict[str, Any] = {"namespaces": launcher_namespaces(), "tmpfs": ["/tmp"]}
    if os.geteuid() != 0:
        spec |= {"uid": os.geteuid(), "gid": os.getegid()}
    try:
        trial = subprocess.run([*launcher_argv(spec), "/bin/true"], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the launcher does not run: {exc}"
    if trial.returncode != 0:
        return f"cannot create namespaces here: {trial.stderr.strip()[:200]}"
    return None


def start_probe() -> None:
    """Begin the probe on a background thread, once: a command that will run a provider calls
    this before its imports, which then hide the probe's ~40 ms of child processes."""
    global _started
    with _start_lock:
        if _started is None:
            _started = threading.Thread(target=_probe_quietly, name="cto-isolation-probe",
                                        daemon=True)
            _started.start()


def probe() -> Probe:
    """What this machine offers: the background probe's result once it is done, else probed
    now; cached for the process. Whatever the thread could not do is done again here, where
    its error shows."""
    if _started is not None:
        _started.join()
    return _probe_once()


def _probe_quietly() -> None:
    with contextlib.suppress(Exception):
        _probe_once()


@functools.lru_cache(maxsize=1)
def _probe_once() -> Probe:
    path = shutil.which("bwrap")
    error = version = digest = None
    if path is None:
        error = "bwrap is not installed (Debian package bubblewrap)"
    else:
        try:
            trial = subprocess.run(
                [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                 "--unshare-pid", "--unshare-net", "--cap-drop", "ALL",
                 *(BWRAP_DROP_CAPS if os.geteuid() == 0 else ()), "--die-with-parent",
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
    return Probe(path, error, version, digest, landlock.abi_version(), shutil.which("setpriv"),
                 _probe_namespaces())
