#!/usr/bin/env python3
"""Show that each confinement guard is load-bearing: remove it in a copy of the repository and run
the tests that must then fail. `python3 tools/guard_check.py [GUARD ...]` (default: all; `--list`).

Each guard is a text patch of the source (asserted to apply); the selected tests run in the copy
with this checkout's interpreter. A guard whose tests still pass when it is gone is reported.

With a guard gone, a hostile test's processes may escape every containment of the harness (they
did: fork-and-exit chains of root outlived a run by hours). So each test run is PID 1's child of a
PID namespace of its own (`unshare --pid --fork --kill-child --mount-proc`): when it ends, however
it ends, the kernel kills everything left in that namespace. Without `unshare` nothing runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]
ISOLATION = "src/cto_harness/sandbox/isolation.py"
LAUNCHER = "src/cto_harness/sandbox/launcher.py"
PROBE = "src/cto_harness/sandbox/probe.py"  # ROOT_NAMESPACES
HOSTILE = "tests/hostile/test_hostile.py"
UNITS = "tests/test_confinement.py"
Patch = tuple[str, str, str]  # (file, text, replacement)
# Everything the tests start lives and dies in this namespace (see the module's docstring).
CONTAIN = ("unshare", "--pid", "--fork", "--kill-child", "--mount-proc")

SURVIVED = '            breaches.append(f"the canary\'s processes survived it ({len(killed)})")\n'
CANARY_OFF: Patch = (ISOLATION, SURVIVED, SURVIVED + "        breaches = []  # canary off\n")
DROP_OFF: list[Patch] = [
    (ISOLATION, "        if not self.user.separate:\n            return launcher_argv({\"mode\": \"drop\"})\n"
                "        if self.probe.setpriv_path:",
     "        if True:\n            return launcher_argv({\"mode\": \"drop\"})\n"
     "        if self.probe.setpriv_path:"),
    (LAUNCHER, "    if uid is not None:\n        drop(", "    if False:\n        drop("),
]
NAMESPACES = 'ROOT_NAMESPACES = ("mount", "pid", "net", "ipc", "uts")'
NET_OFF: list[Patch] = [
    (ISOLATION, '*([] if self.share_network else ["--unshare-net"]), ', ''),
    (PROBE, NAMESPACES, 'ROOT_NAMESPACES = ("mount", "pid", "ipc", "uts")'),
]
PRIVATE_OFF: list[Patch] = [
    (ISOLATION, 'PRIVATE_DIRS = ("/tmp", "/var/tmp", "/run", "/dev/shm", "/dev/mqueue")',
     'PRIVATE_DIRS = ("/tmp",)'),
]
PDEATH_OFF: list[Patch] = [
    ("src/cto_harness/sandbox/process.py",
     "        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)\n", "        pass\n"),
    (LAUNCHER, "    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)\n    if alive_fd",
     "    if False and alive_fd"),
]
SWEEP_OFF: list[Patch] = [
    ("src/cto_harness/sandbox/users.py", "    pid = os.fork()\n    if pid == 0:  # pragma",
     "    return\n    pid = os.fork()\n    if pid == 0:  # pragma"),
]
PIDNS_OFF: list[Patch] = [(PROBE, NAMESPACES, 'ROOT_NAMESPACES = ("mount", "net", "ipc", "uts")')]
# The harness's own kill loop after the provider (scan, kill, until none is left).
KILL_LOOP_OFF: list[Patch] = [
    ("src/cto_harness/sandbox/process.py", "    for _ in range(rounds):\n",
     "    for _ in range(0):\n"),
]
GITDIR_OFF: list[Patch] = [
    ("src/cto_harness/core/gitdir.py", '    result = GitDirCheck()\n    dot_git = workspace / ".git"\n',
     '    return GitDirCheck(config=(workspace / ".git" / "config").read_bytes())\n'),
]
UNSHARE_OFF: list[Patch] = [
    ("src/cto_harness/sandbox/users.py", "            if unshare_links and stat.S_ISREG(",
     "            if False and stat.S_ISREG("),
]
PROBE_OFF: list[Patch] = [
    ("src/cto_harness/sandbox/confined.py", "[*conf.prefix(), *argv]", "[*argv]"),
]

# guard -> (patches that remove it, test files, -k selection of the tests that must then fail)
DEMOS: dict[str, tuple[list[Patch], str, str]] = {
    "uid drop (canary on)": (DROP_OFF, HOSTILE, "read_root_only or read_signing_key"),
    "uid drop (canary off)": ([*DROP_OFF, CANARY_OFF], HOSTILE,
                              "read_root_only or read_signing_key"),
    "network namespace (canary off)": ([*NET_OFF, CANARY_OFF], HOSTILE,
                                       "git_push_loopback or unix_socket_escape"),
    "network namespace (canary on)": (NET_OFF, HOSTILE, "git_push_loopback"),
    "private /run (canary off)": ([*PRIVATE_OFF, CANARY_OFF], HOSTILE, "unix_socket_escape"),
    "parent-death signals": (PDEATH_OFF, HOSTILE, "harness_killed"),
    "uid sweep": (SWEEP_OFF, UNITS, "sweep_stops"),
    # Against a fork-and-exit chain three layers hold on landlock and none, each enough alone in
    # practice: the PID namespace, the uid sweep and the harness's own kill loop (a subreaper's
    # scan-and-kill, which a chain of Python or sh processes has not outrun here). So the demo
    # removes all three; the sweep alone is shown by the unit test above.
    "process containment (PID namespace, uid sweep, kill loop)": (
        [*SWEEP_OFF, *PIDNS_OFF, *KILL_LOOP_OFF], HOSTILE, "fork_chain"),
    "uid + PID namespace (canary off)": ([*DROP_OFF, *PIDNS_OFF, CANARY_OFF], HOSTILE,
                                         "read_harness_environ or signal_harness"),
    ".git check": (GITDIR_OFF, f"tests/case/test_case_confinement.py {UNITS}", "git_dir"),
    "confined identity probe": (PROBE_OFF, "tests/provider/test_identity.py", "confined"),
    "hand-over never gives away a shared inode": (UNSHARE_OFF, UNITS, "shares"),
}


def main(names: list[str]) -> int:
    if names == ["--list"]:
        print("\n".join(DEMOS))
        return 0
    unknown = [n for n in names if n not in DEMOS]
    if unknown:
        print(f"unknown guard(s): {unknown}; --list shows them", file=sys.stderr)
        return 64
    unshare = shutil.which(CONTAIN[0])
    probe = subprocess.run([unshare or CONTAIN[0], *CONTAIN[1:], "true"], capture_output=True,
                           text=True) if unshare else None
    if probe is None or probe.returncode != 0:
        why = probe.stderr.strip() if probe else "unshare is not installed"
        print(f"cannot run tests in a PID namespace of their own ({why}): with a guard removed "
              f"their processes could outlive the check, so nothing is run", file=sys.stderr)
        return 3
    held = []
    for name in names or DEMOS:
        patches, tests, select = DEMOS[name]
        with tempfile.TemporaryDirectory(prefix="cto-guard-") as tmp:
            copy = Path(tmp) / "repo"
            shutil.copytree(SRC, copy, symlinks=True,
                            ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__"))
            for rel, old, new in patches:
                path = copy / rel
                text = path.read_text()
                if old not in text:
                    print(f"{name}: the patch of {rel} no longer applies", file=sys.stderr)
                    return 3
                path.write_text(text.replace(old, new))
            done = subprocess.run(
                [unshare, *CONTAIN[1:], sys.executable, "-m", "pytest", "-q", "-p",
                 "no:cacheprovider", *tests.split(), "-k", select],
                cwd=copy, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines()
                 if line.startswith(("FAILED", "E       AssertionError"))
                 or " passed" in line or " failed" in line]
        print(f"## guard removed: {name}\n" + "\n".join(lines[-14:]) + "\n", flush=True)
        if done.returncode == 0:
            held.append(name)
    for name in held:
        print(f"NOT LOAD-BEARING: with `{name}` removed every selected test still passed",
              file=sys.stderr)
    return 1 if held else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
