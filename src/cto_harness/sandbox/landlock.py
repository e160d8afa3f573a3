"""A small ctypes binding of Linux Landlock, and a launcher that confines itself then execs.

Standard library only, and runnable as a script (`python -I -S landlock.py SPEC -- argv…`): the
harness starts the launcher, the launcher sets `PR_SET_NO_NEW_PRIVS`, builds a ruleset that
handles every access right the kernel's ABI knows, allows reading (and executing) the paths of
SPEC's `read` list and everything under SPEC's `write` list, denies TCP connect/bind when SPEC says
`"deny_tcp": true` (ABI 4+), scopes signals and abstract sockets to the sandbox (ABI 6+), restricts
itself and execs argv. The restriction is inherited by every descendant and cannot be lifted.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # the same on every arch
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH, RULE_NET_PORT = 1, 2
PR_SET_NO_NEW_PRIVS = 38

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

READ_ACCESS = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
FILE_ACCESS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class _NetPortAttr(ctypes.Structure):
    _fields_ = (("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64))


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def abi_version() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    try:
        libc = _libc()
        libc.syscall.restype = ctypes.c_long
        version = libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                               ctypes.c_uint32(CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


def handled_fs(abi: int) -> int:
    rights = (1 << 13) - 1  # EXECUTE … MAKE_SYM: ABI 1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def _fail(what: str) -> None:
    errno = ctypes.get_errno()
    raise OSError(errno, f"landlock: {what} failed: {os.strerror(errno)}")


def restrict(read: list[str], write: list[str], *, deny_tcp: bool,
             tcp_ports: list[int] | None = None) -> int:
    """Confine the calling process (and its future children); returns the ABI used. With
    `deny_tcp`, TCP bind/connect is denied except on `tcp_ports` (the sandbox's endpoint
    forwarder, inside its own network namespace)."""
    abi = abi_version()
    if abi < 1:
        raise OSError("landlock is not available on this kernel")
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    fs = handled_fs(abi)
    attr = _RulesetAttr(handled_access_fs=fs)
    size = 8
    if abi >= 4:
        size = 16
        if deny_tcp:
            attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
    if abi >= 6:
        size = 24
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
    ruleset = libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        _fail("create_ruleset")
    try:
        for paths, access in ((read, READ_ACCESS), (write, fs)):
            for path in paths:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    continue  # an absent path grants nothing
                try:
                    allowed = access & fs
                    if not os.path.isdir(path):
                        allowed &= FILE_ACCESS
                    rule = _PathBeneathAttr(allowed_access=allowed, parent_fd=fd)
                    if libc.syscall(SYS_ADD_RULE, ctypes.c_int(ruleset),
                                    ctypes.c_int(RULE_PATH_BENEATH), ctypes.byref(rule),
                                    ctypes.c_uint32(0)) != 0:
                        _fail(f"add_rule {path}")
                finally:
                    os.close(fd)
        if abi >= 4 and deny_tcp:
            for port in tcp_ports or []:
                net = _NetPortAttr(allowed_access=NET_BIND_TCP | NET_CONNECT_TCP, port=int(port))
                if libc.syscall(SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(RULE_NET_PORT),
                                ctypes.byref(net), ctypes.c_uint32(0)) != 0:
                    _fail(f"add_rule tcp port {port}")
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            _fail("prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            _fail("restrict_self")
    finally:
        os.close(ruleset)
    return abi


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: landlock.py SPEC-JSON -- argv…", file=sys.stderr)
        return 126
    spec = json.loads(argv[0])
    try:
        restrict(spec["read"], spec["write"], deny_tcp=bool(spec.get("deny_tcp")),
                 tcp_ports=spec.get("tcp_ports"))
    except OSError as exc:
        print(f"cto-harness landlock launcher: {exc}", file=sys.stderr)
        return 126
    if spec.get("cwd"):
        os.chdir(spec["cwd"])
    try:
        os.execvp(argv[2], argv[2:])
    except OSError as exc:
        print(f"cto-harness landlock launcher: cannot exec {argv[2]}: {exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
