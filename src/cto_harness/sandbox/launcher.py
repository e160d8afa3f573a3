"""The root-side launcher of a sandboxed process: `python -I -S launcher.py SPEC -- argv…`.

Standard library only (it runs before anything is confined, and inside bwrap when setpriv is
missing). SPEC is JSON; every key is optional:

- `own`: trees to hand to `uid:gid` first (lchown, never following a link): the verification's
  copy, which the harness makes just before the launch.
- `mode`: `exec` (hand over, then exec argv: bwrap drops inside), `drop` (drop to uid:gid, then
  exec) or `sandbox` (the default; below).
- `sandbox` mode, the landlock and none tiers: new mount, PID, network, IPC and UTS namespaces
  (`namespaces`; with `user` too when the harness is not root), the mount plan (`tmpfs` folders
  first, each of its `tmpfs_bytes` size, `scratch` ones among them world-writable and sticky, then
  `binds` `[source, target, writable]` re-exposing what the sandbox may use), then a fork: the
  child is PID 1 of the new namespace, mounts a fresh /proc, brings loopback up and forks the
  payload, which drops to `uid:gid` (no supplementary group), sets no-new-privs and the
  parent-death signal, applies Landlock (`landlock`: read, write, tcp_ports) and execs argv. PID 1
  reaps every orphan; when the payload exits it lists what is still running (`status`: a file it
  writes that report to), kills it (`kill(-1)` from PID 1 reaches only its namespace) and reaps
  until `wait` reports no child. Its exit then ends the namespace.

Every process of the chain dies with its parent (PR_SET_PDEATHSIG): a SIGKILLed harness takes the
launcher, the launcher PID 1, PID 1 the whole namespace. Exit codes: the payload's; 125 when the
sandbox cannot be set up (the reason on stderr).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys

# Imported only where they are needed (each costs 1-4 ms, and this starts before every
# sandboxed process): ctypes for the system calls, socket and struct for loopback, importlib
# for Landlock. Each is loaded before the mounts are made. Types are for the checker alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ctypes
    import socket
    from types import ModuleType
    from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACE_FLAGS = {"mount": CLONE_NEWNS, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC,
                   "user": CLONE_NEWUSER, "pid": CLONE_NEWPID, "net": CLONE_NEWNET}
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
EXIT_SETUP = 125

_LIBC: ctypes.CDLL | None = None
_LANDLOCK: ModuleType | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _landlock() -> ModuleType:
    """The sibling module (standard library only), loaded before any mount can hide it."""
    global _LANDLOCK
    if _LANDLOCK is None:
        import importlib

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        _LANDLOCK = importlib.import_module("landlock")
    return _LANDLOCK


class SetupError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)}")


def _prctl(option: int, value: int) -> None:
    _check(_libc().prctl(option, value, 0, 0, 0), f"prctl({option})")


# The kernel keyring is no namespace of any tier: keys outlive the uid sweep, a key's own
# permissions open it to other sandbox uids (a channel between concurrent runs), and a process
# keeps the harness's session keyring across the drop. No sandboxed process may use it: a
# seccomp filter answers add_key, request_key and keyctl with ENOSYS, on the native ABI and the
# 32-bit one (x32's numbers carry bit 30, masked off).
_KEYRING_SYSCALLS: dict[str, list[tuple[int, int | None, tuple[int, int, int]]]] = {
    "x86_64": [(0xC000003E, 0xBFFFFFFF, (248, 249, 250)), (0x40000003, None, (286, 287, 288))],
    "aarch64": [(0xC00000B7, None, (217, 218, 219)), (0x40000028, None, (309, 310, 311))],
}
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
_BPF_LD_ABS_W, _BPF_AND_K, _BPF_JEQ_K, _BPF_RET_K = 0x20, 0x54, 0x15, 0x06
_SECCOMP_RET_ALLOW, _SECCOMP_RET_ERRNO, _ENOSYS = 0x7FFF0000, 0x00050000, 38


def keyring_filter(machine: str) -> list[tuple[int, int, int, int]]:
    """The filter's instructions (code, jt, jf, k) for `machine`: per ABI, the arch check, the
    syscall number (masked), a match to DENY; any other call is allowed."""
    blocks: list[list[tuple[int, int, int, int]]] = []
    for arch, mask, numbers in _KEYRING_SYSCALLS[machine]:
        body = [(_BPF_LD_ABS_W, 0, 0, 0), *([(_BPF_AND_K, 0, 0, mask)] if mask else []),
                *[(_BPF_JEQ_K, 0, 0, n) for n in numbers], (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW)]
        blocks.append([(_BPF_LD_ABS_W, 0, 0, 4), (_BPF_JEQ_K, 0, len(body), arch), *body])
    program = [insn for block in blocks for insn in block]
    program.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW))  # another ABI: not a keyring call
    deny = len(program)
    program.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | _ENOSYS))
    # Each number's match jumps to DENY (offsets are relative to the next instruction).
    return [(code, deny - i - 1, jf, k) if code == _BPF_JEQ_K and jt == 0 and jf == 0 else
            (code, jt, jf, k) for i, (code, jt, jf, k) in enumerate(program)]


def keyring_program() -> Any:
    """The keyring filter as the kernel takes it (a `struct sock_fprog`, which keeps its
    instructions alive), or None on a machine with no table of its system calls."""
    import ctypes

    machine = os.uname().machine
    if machine not in _KEYRING_SYSCALLS:
        return None

    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                    ("k", ctypes.c_uint32)]

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

    insns = keyring_filter(machine)
    return SockFprog(len(insns), (SockFilter * len(insns))(*[SockFilter(*i) for i in insns]))


def install_keyring_filter(program: Any) -> int:
    """prctl(PR_SET_SECCOMP) with `keyring_program()`; 0 when it took. Safe between fork and
    exec: the program is built beforehand."""
    import ctypes

    return int(_libc().prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0))


def deny_keyring() -> None:
    """Install the keyring filter on this process and all it execs (no-new-privs is set)."""
    program = keyring_program()
    if program is None:
        raise SetupError(f"no keyring filter for {os.uname().machine}: the kernel keyring "
                         "would be shared")
    _check(install_keyring_filter(program), "seccomp")


def die_with_parent(parent: int, alive_fd: int | None = None) -> None:
    """SIGKILL when the parent goes; if it already went, go now. Across a PID namespace getppid()
    says 0, so there the parent's liveness is the write end of a pipe it holds (`alive_fd`)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if alive_fd is not None:
        import select

        if select.select([alive_fd], [], [], 0)[0]:  # EOF: the parent is gone
            os._exit(EXIT_SETUP)
    elif os.getppid() != parent:
        os._exit(EXIT_SETUP)


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def enc(value: str | None) -> bytes | None:
        return None if value is None else value.encode()

    import ctypes

    _check(_libc().mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags),
                         enc(data)), f"mount {target}")


def _walk_chown(root: str, uid: int, gid: int) -> None:
    stack = [os.fsencode(root)]
    while stack:
        current = stack.pop()
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            continue
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.lchown(current, uid, gid)
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(current) as entries:
                stack.extend(entry.path for entry in entries)


def drop(uid: int, gid: int) -> None:
    """To `uid:gid` for good: no supplementary group, no way back, no new privileges by exec."""
    if uid == 0 or gid == 0:
        raise SetupError("refusing to run a sandboxed process as root")
    if os.geteuid() == 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise SetupError(f"could not become {uid}:{gid}")
    if set(os.getgroups()) - {gid}:
        raise SetupError(f"supplementary groups left after the drop: {os.getgroups()}")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise SetupError("root came back after the drop")
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def _map_identity(uid: int, gid: int, outer_uid: int, outer_gid: int) -> None:
    """In a new user namespace (a non-root harness): keep our own ids inside."""
    with open("/proc/self/setgroups", "w") as handle:
        handle.write("deny")
    with open("/proc/self/uid_map", "w") as handle:
        handle.write(f"{uid} {outer_uid} 1")
    with open("/proc/self/gid_map", "w") as handle:
        handle.write(f"{gid} {outer_gid} 1")


def _loopback_up() -> None:
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", _ioctl(sock, SIOCGIFFLAGS, request))[1]
        _ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))


def _ioctl(sock: socket.socket, request: int, arg: bytes) -> bytes:
    import fcntl

    return fcntl.ioctl(sock.fileno(), request, arg)


def _make_target(target: str, is_dir: bool) -> None:
    """Create a mount point (and its parents, 0755) in a tmpfs of the plan."""
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        _make_target(parent, True)
    if os.path.lexists(target):
        return
    if is_dir:
        os.mkdir(target, 0o755)
        os.chmod(target, 0o755)
    else:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def apply_mounts(spec: dict[str, Any]) -> None:
    """The mount plan: private propagation, tmpfs folders, then the binds back into them."""
    tmpfs = sorted(spec.get("tmpfs", []), key=lambda p: p.count("/"))
    binds = sorted(spec.get("binds", []), key=lambda b: b[1].count("/"))
    # Open every source before a tmpfs hides it; mount from the descriptor afterwards.
    sources = []
    for source, target, writable in binds:
        if not any(_under(target, t) for t in tmpfs):
            continue  # in view already, with its own permissions
        try:
            fd = os.open(source, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        sources.append((fd, target, writable, stat.S_ISDIR(os.fstat(fd).st_mode)))
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    scratch = set(spec.get("scratch", []))  # world-writable and sticky, like any /tmp
    sizes = spec.get("tmpfs_bytes", {})  # bounded: a tmpfs is RAM no limit of the run charges
    for folder in tmpfs:
        if os.path.isdir(folder) and not os.path.islink(folder):
            data = "mode=1777" if folder in scratch else "mode=0755"
            if folder in sizes:
                data += f",size={int(sizes[folder])}"
            _mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, data)
    for fd, target, writable, is_dir in sources:
        _make_target(target, is_dir)
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        flags = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (0 if writable else MS_RDONLY)
        _mount(None, target, None, flags)
        os.close(fd)


def _proc_view() -> list[tuple[int, str]]:
    """Live processes of this PID namespace but ourselves (zombies have already ended)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    if handle.read().rpartition(b")")[2].split()[0] in (b"Z", b"X"):
                        continue
                with open(f"/proc/{name}/cmdline", "rb") as handle:
                    cmd = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except (OSError, IndexError):
                continue
            found.append((int(name), cmd[:300]))
    return found


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def init(spec: dict[str, Any], argv: list[str], status_fd: int | None, launcher: int,
         alive_fd: int) -> None:
    """PID 1 of the sandbox: start the payload, reap everything, end with the payload."""
    die_with_parent(launcher, alive_fd)
    os.close(alive_fd)
    if "pid" in spec.get("namespaces", []):
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    if "net" in spec.get("namespaces", []):
        _loopback_up()
    me = os.getpid()
    payload_pid = os.fork()
    if payload_pid == 0:
        try:
            payload(spec, argv, me)
        except BaseException as exc:
            print(f"cto-harness launcher: {exc}", file=sys.stderr)
        os._exit(EXIT_SETUP)
    code = EXIT_SETUP
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid == payload_pid:
            code = _exit_code(status)
            break
    leftovers = _proc_view() if os.getpid() == 1 else []
    if os.getpid() == 1:  # kill(-1) from PID 1 reaches its own namespace only
        try:  # noqa: SIM105 (not contextlib: ~3 ms to import, before every sandboxed process)
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    if status_fd is not None:
        report = {"exit_code": code, "leftovers": [{"pid": p, "cmdline": c} for p, c in leftovers],
                  "namespace_empty": os.getpid() == 1}
        os.write(status_fd, json.dumps(report).encode())
    os._exit(code)


def payload(spec: dict[str, Any], argv: list[str], parent: int) -> None:
    uid, gid = spec.get("uid"), spec.get("gid")
    if uid is not None:
        drop(int(uid), int(gid if gid is not None else uid))
    else:
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
    die_with_parent(parent)  # after the drop: changing credentials clears it
    rules = spec.get("landlock")
    if rules is not None:
        landlock = _landlock()
        landlock.restrict(rules["read"], rules["write"], deny_tcp=bool(rules.get("deny_tcp")),
                          tcp_ports=rules.get("tcp_ports", []))
    if spec.get("cwd"):
        os.chdir(spec["cwd"])
    deny_keyring()
    os.execvp(argv[0], argv)


def sandbox(spec: dict[str, Any], argv: list[str]) -> int:
    status_fd = None
    if spec.get("status"):
        status_fd = os.open(spec["status"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                            0o600)
    flags = 0
    for name in spec.get("namespaces", []):
        flags |= NAMESPACE_FLAGS[name]
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    if flags:
        import ctypes

        if flags & CLONE_NEWNET:  # for loopback, inside: loaded before any mount
            import socket  # noqa: F401
            import struct  # noqa: F401
        _check(_libc().unshare(ctypes.c_int(flags)), "unshare")
    if flags & CLONE_NEWUSER:
        _map_identity(int(spec["uid"]), int(spec["gid"]), outer_uid, outer_gid)
        spec = {**spec, "uid": None}  # already that identity; there is nothing to drop
    if flags & CLONE_NEWNS:
        apply_mounts(spec)
    me = os.getpid()
    alive_read, alive_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(alive_write)
        try:
            init(spec, argv, status_fd, me, alive_read)
        except BaseException as exc:
            print(f"cto-harness launcher: {exc}", file=sys.stderr)
        os._exit(EXIT_SETUP)
    os.close(alive_read)
    if status_fd is not None:
        os.close(status_fd)
    # The launcher itself is only a waiting parent; a signal it gets is forwarded as SIGKILL.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: os.kill(child, signal.SIGKILL))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            return _exit_code(status)
        except ChildProcessError:
            return EXIT_SETUP


def main(args: list[str]) -> int:
    if len(args) < 3 or args[1] != "--":
        print("usage: launcher.py SPEC-JSON -- argv…", file=sys.stderr)
        return EXIT_SETUP
    spec, argv = json.loads(args[0]), args[2:]
    try:
        if spec.get("landlock") is not None:
            _landlock()
        for tree in spec.get("own", []):
            _walk_chown(tree, int(spec["uid"]), int(spec["gid"]))
        mode = spec.get("mode", "sandbox")
        if mode == "exec":
            os.execvp(argv[0], argv)
        if mode == "drop":
            payload(spec, argv, os.getppid())
        return sandbox(spec, argv)
    except (SetupError, OSError, ValueError, KeyError) as exc:
        print(f"cto-harness launcher: {exc}", file=sys.stderr)
        return EXIT_SETUP


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
